"""The health authority's portal and the operator's dashboard: officer accounts, sessions, CSRF, the audit
log, server-rendered pages and ``/metrics``. Nothing here links a person, a TAN or an officer to an upload."""
