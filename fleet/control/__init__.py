"""Decisions and the commands that carry them to the trucks: the outbox, desired state per
truck, acknowledgements and the audit trail."""
