"""kopf handlers only (@kopf.on.*); each delegates to a step in `lunbridge_operator.reconcile`."""
