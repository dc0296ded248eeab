"""The operation names other tools rely on (the national SDK's, then getTrace, getOverdueList and getReceipts): the
tests pin them here."""

OPERATIONS = {
    "sendEdoc",
    "getReceivedEdocList",
    "getEdoc",
    "updateStatus",
    "getSentEdocList",
    "getAgenciesList",
    "registerAgency",
    "deleteAgency",
    "getTrace",
    "getOverdueList",
    "getReceipts",
}
