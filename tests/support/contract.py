"""The operation names other tools rely on (the national SDK's, then getTrace and getOverdueList): the
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
}
