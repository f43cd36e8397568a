"""The command side of Guanai: CareApplication and its command groups, and the as-of and audit queries.

- ``application.care``: CareApplication (load, let ``domain/`` decide, save), its errors and CommandResult;
- ``application.visits`` / ``application.emergencies``: the visit and emergency command groups;
- ``application.accounts``: accounts and sign-in (the account commands, and the service that keeps
  their secrets and sessions through ports);
- ``application.asof``: an aggregate's state as of an instant, on either time axis;
- ``application.audit``: what auditors read (case histories, exports, the access log).
"""
