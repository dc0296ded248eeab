"""The operation names the issue fixes (they mirror the national SDK): the tests pin them here."""

OPERATIONS = {
    "sendEdoc",
    "getReceivedEdocList",
    "getEdoc",
    "updateStatus",
    "getSentEdocList",
    "getAgenciesList",
    "registerAgency",
    "deleteAgency",
}
