"""What outlives a session: the plan cache (``store``), the audit trail (``audit``) and the
usage figures derived from both (``stats``)."""
