"""The simulator's front door: TLS that only the lab CA vouches for, and HTTP Basic
authentication with ONTAP's 401 answer."""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request
from dataclasses import replace

import pytest

from tests.lab.ontap.lab import OntapSim, request

pytestmark = pytest.mark.peers


def test_only_the_lab_ca_and_the_right_password_get_in(ontap: OntapSim) -> None:
    with pytest.raises(urllib.error.URLError) as caught:
        urllib.request.urlopen(ontap.url + "/api/cluster", context=ssl.create_default_context(), timeout=10)
    assert isinstance(caught.value.reason, ssl.SSLCertVerificationError)

    status, answer = request(replace(ontap, password="wrong"), "GET", "/api/cluster")
    assert status == 401
    assert answer["error"]["code"] == "6"
    status, answer = request(replace(ontap, username="nobody"), "GET", "/api/storage/luns")
    assert status == 401
    assert request(ontap, "GET", "/api/cluster")[0] == 200
