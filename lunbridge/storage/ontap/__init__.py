"""A NetApp ONTAP cluster's SVM as a lunbridge storage server, through the ONTAP REST API (in
progress: so far the rules that need no cluster, `identity` and `errors`)."""
