"""Idempotent reconcile steps as plain async functions, testable without kopf's machinery."""
