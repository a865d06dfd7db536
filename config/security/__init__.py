"""Security plumbing (ASVS level 2): bad-input guards, login throttling glue, session ending, one-line 403
logs, deploy checks, and integration API tokens. Imports no Waybill app."""
