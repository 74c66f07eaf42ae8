"""A stateful ONTAP REST simulator for lunbridge's tests, with tgtd as its data plane.

No public ONTAP SAN simulator exists (see the README here), so lunbridge's ONTAP backend is
tested against this one: it serves the ONTAP REST calls lunbridge makes, checks every request
and every answer against the schemas shipped in netapp-ontap 9.19.1.0, keeps its state on disk,
and serves the LUNs it maps through a real tgtd, so that initiators see them as they would see
an ONTAP SVM's (NAA `600a0980` + the serial's hex). Run it with `python -m tests.lab.ontap`, or
from tests with `tests.lab.ontap.lab.start`.
"""
