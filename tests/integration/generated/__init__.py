"""Generated bad input (hypothesis) against the real API server, the operator and the CSI
services: never a crash, never INTERNAL or UNKNOWN, every refusal names the field."""
