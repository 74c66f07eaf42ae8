"""The one redaction rule (`lunbridge.redact`): URLs' user info, secret-looking assignments
and command-line arguments, Authorization headers, registered values; and every LunbridgeError
(CommandFailed and CommandTimedOut quote argv and stderr) and configuration refusal of the
domain library. The operator's and CSI plugin's entry points: test_redact_entry_points.py."""

from __future__ import annotations

import json

import pytest

from lunbridge import redact
from lunbridge.command import CommandFailed, CommandTimedOut, Result, run
from lunbridge.errors import InvalidArgument, NotFound, Unavailable
from lunbridge.hypervisor.libvirt import LibvirtConfig
from lunbridge.hypervisor.vsphere import VSphereConfig

SECRET = "Sup3r-S3cret"
MASK = redact.MASK


# -- the rule ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://admin:Sup3r-S3cret@vc.example/sdk", "https://admin:***@vc.example/sdk"),
        ("'https://admin:Sup3r-S3cret@vc.example:99999/sdk' has a bad port",
         "'https://admin:***@vc.example:99999/sdk' has a bad port"),
        # a user with '@', a password with '@' and '/' (urlsplit would cut at the '/')
        ("https://svc@vsphere.local:p@ss/w0rd@vc/sdk x", "https://svc@vsphere.local:***@vc/sdk x"),
        ("qemu+tcp://root:Sup3r-S3cret@kvm1/system", "qemu+tcp://root:***@kvm1/system"),
        ("https://:Sup3r-S3cret@vc/sdk", "https://:***@vc/sdk"),
        ("two: http://a:pw1@h1/x, http://b:pw2@h2/y", "two: http://a:***@h1/x, http://b:***@h2/y"),
    ],
)  # fmt: skip
def test_the_password_of_a_urls_user_info_is_masked(text: str, expected: str) -> None:
    assert redact.redact(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("LUNBRIDGE_VSPHERE_PASSWORD=Sup3r-S3cret next", "LUNBRIDGE_VSPHERE_PASSWORD=*** next"),
        ("password = Sup3r-S3cret", "password = ***"),
        ("node.session.auth.password = Sup3r-S3cret", "node.session.auth.password = ***"),
        ('{"password": "Sup3r S3cret", "user": "u"}', '{"password": "***", "user": "u"}'),
        ("{'token': 'abc.def'}", "{'token': '***'}"),
        ("token: abcdef", "token: ***"),
        ("mount -o username=u,password=Sup3r-S3cret,vers=3 //h/s /m",
         "mount -o username=u,password=***,vers=3 //h/s /m"),
        ("secret=s1 passwd=s2 pwd=s3 api_key=s4 apiKey=s5 key=s6 chap-secret=s7 credentials=s8",
         "secret=*** passwd=*** pwd=*** api_key=*** apiKey=*** key=*** chap-secret=*** credentials=***"),
        ('"secret": "v" and \'key\': \'v\'', '"secret": "***" and \'key\': \'***\''),
    ],
)  # fmt: skip
def test_assignments_to_secret_names_are_masked(text: str, expected: str) -> None:
    assert redact.redact(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tgtadm --lld iscsi --op new --mode account --user u --password Ch4p-S3cret",
         "tgtadm --lld iscsi --op new --mode account --user u --password ***"),
        ("iscsiadm -m node -o update -n node.session.auth.password -v Ch4p-S3cret -p 10.0.0.1:3260",
         "iscsiadm -m node -o update -n node.session.auth.password -v *** -p 10.0.0.1:3260"),
        ("tgtadm --name 'node.session.auth.password_in' --value 'a b'",
         "tgtadm --name 'node.session.auth.password_in' --value '***'"),
        ("tool --password=x1 --token x2 --chap-secret x3 --api-key x4 --secret --verbose",
         "tool --password=*** --token *** --chap-secret *** --api-key *** --secret --verbose"),
    ],
)  # fmt: skip
def test_secret_command_line_arguments_are_masked(text: str, expected: str) -> None:
    assert redact.redact(text) == expected


def test_authorization_headers_and_bearer_tokens_are_masked() -> None:
    assert redact.redact("Authorization: Basic dXNlcjpwYXNz next") == "Authorization: *** next"
    assert redact.redact("{'authorization': 'Bearer abc def'}") == "{'authorization': '***'}"
    token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"
    assert redact.redact(f"sent bearer {token}") == "sent bearer ***"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "VirtualDisk default/it-vd-1a2b: attached naa.6001405abcdef0123 to vm DC0_C0_RP0_VM1",
        "controller 1000 (bus 0) unit 3; disk 2001 at 1000:3",
        "vCenter https://127.0.0.1:40895/sdk refused the login of user 'lab-admin@vsphere.local': "
        "wrong user name or password; fix the vSphere credentials Secret",
        "the vSphere credentials Secret has no 'password' key (or it is empty)",
        "folder of a mounted Secret: url, username, password [, thumbprint, ca.crt, insecure]",
        "libvirt qemu+ssh://root@kvm1/system refused access",  # a user alone is no secret
        "`blkid -p -o export /dev/sdb` exited 2: no output",
        "`iscsiadm -m discovery -t st -p 127.0.0.1:3260` exited 4: login failed",
        "tgtd refused `tgtadm -C 7 --lld iscsi --op new --mode target --tid 3 -T iqn.2024-01.io.x:a`",
        "starting_token '7' was not handed out by ListVolumes (or is stale)",
        "100% done: key 5 of monkey=1",
    ],
)
def test_text_without_secrets_is_unchanged(text: str) -> None:
    assert redact.redact(text) == text


def test_registered_values_are_masked_anywhere_in_all_their_spellings() -> None:
    value = "Pa ss/w0rd'!"
    redact.register(value)
    assert redact.redact(f"/pool/{value}/luns") == "/pool/***/luns"
    assert redact.redact("https://vc/?pw=" + "Pa%20ss%2Fw0rd%27%21") == "https://vc/?pw=***"
    assert redact.redact(json.dumps({"p": value})) == '{"p": "***"}'
    assert redact.redact(repr(value)) == '"***"'


def test_short_values_are_not_registered_and_the_longest_value_wins() -> None:
    redact.register("pw")
    redact.register(None)
    redact.register("")
    assert redact.redact("pw pw") == "pw pw"
    redact.register("abcdef")
    redact.register("abcdefgh-long")
    assert redact.redact("x abcdefgh-long y abcdef") == "x *** y ***"


def test_register_url_registers_only_a_password() -> None:
    redact.register_url("https://admin:Url-Pa55word@vc/sdk")
    redact.register_url("qemu+ssh://root-user@kvm1/system")
    assert redact.redact("Url-Pa55word") == MASK
    assert redact.redact("root-user") == "root-user"


@pytest.mark.parametrize(
    ("name", "secret"),
    [("password", True), ("chapSecret", True), ("api-key", True), ("tls.key", True), ("token", True),
     ("username", False), ("url", False), ("ca.crt", False), ("thumbprint", False), ("insecure", False)],
)  # fmt: skip
def test_secret_names(name: str, secret: bool) -> None:
    assert redact.is_secret_name(name) is secret


def test_redacting_is_fast() -> None:
    import timeit

    plain = "VirtualDisk default/it-vd-1a2b: attached naa.6001405abcdef0123 to vm DC0_C0_RP0_VM1 (unit 3)"
    hinted = "tgtd refused `tgtadm -C 7 --op new --backing-store /pool/luns/x.img`: key; password"
    per_call = timeit.timeit(lambda: (redact.redact(plain), redact.redact(hinted)), number=2000) / 2000
    assert per_call < 0.001, f"{per_call * 1e6:.0f} µs a pair of lines"


# -- where it applies ----------------------------------------------------------------------


def test_every_lunbridge_error_message_is_redacted() -> None:
    error = Unavailable("cannot reach https://admin:Sup3r-S3cret@vc.example/sdk (password=Sup3r-S3cret)")
    for text in (str(error), repr(error), error.args[0]):
        assert SECRET not in text
    assert "https://admin:***@vc.example/sdk" in str(error)
    late = NotFound("the LUN file /pool/Registered-later-1/x.img is gone")
    redact.register("Registered-later-1")  # registered after the error was made
    assert str(late) == "the LUN file /pool/***/x.img is gone"


def test_command_errors_quote_argv_and_stderr_without_secrets() -> None:
    argv = ("iscsiadm", "-m", "node", "-o", "update", "-n", "node.session.auth.password", "-v", "Ch4p-S3cret")
    failed = CommandFailed(Result(argv, 15, "", "iscsiadm: cannot set password=Ch4p-S3cret\n"))
    assert str(failed) == (
        "`iscsiadm -m node -o update -n node.session.auth.password -v ***` exited 15: "
        "iscsiadm: cannot set password=***"
    )
    assert failed.result.argv == argv  # the raw command stays available to code
    timed_out = CommandTimedOut(["tgtadm", "--password", "Ch4p S3cret", "--user", "u"], 5, 0.5, [])
    assert "Ch4p" not in str(timed_out)
    assert str(timed_out).startswith("`tgtadm --password '***' --user u` did not finish within 5s")


async def test_a_real_command_that_fails_and_echoes_its_secret_argument_is_quoted_masked() -> None:
    script = 'echo "login failed: password=$2" >&2; exit 24'
    result = await run(["sh", "-c", script, "sh", "--password", "Ch4p-S3cret"], 10)
    with pytest.raises(CommandFailed) as failed:
        result.check()
    assert str(failed.value).endswith("--password ***` exited 24: login failed: password=***")


def test_the_vsphere_config_refuses_a_url_with_user_info_without_showing_it() -> None:
    for url in ("https://admin:Sup3r-S3cret@vc.example/sdk", "https://admin:Sup3r-S3cret@vc.example:99999/sdk",
                "http://admin:Sup3r-S3cret@vc.example/sdk", "admin:Sup3r-S3cret@vc.example"):  # fmt: skip
        with pytest.raises(InvalidArgument, match="carries a user name or password") as refused:
            VSphereConfig(url=url, username="u", password="p")
        assert SECRET not in str(refused.value)
    assert redact.redact(f"elsewhere: {SECRET}") == "elsewhere: ***"  # the URL's password is registered


def test_the_vsphere_password_is_registered() -> None:
    VSphereConfig(url="https://vc.example/sdk", username="u", password="Vc-Pa55word-1")
    assert str(Unavailable("a fault quoting Vc-Pa55word-1")) == "a fault quoting ***"


def test_a_libvirt_uri_with_a_password_is_masked() -> None:
    config = LibvirtConfig(uri="qemu+tcp://root:Kvm-Pa55word@kvm1/system", host_iqn="iqn.2024-01.io.x:kvm1")
    assert str(Unavailable(f"libvirt {config.uri} cannot be reached")) == (
        "libvirt qemu+tcp://root:***@kvm1/system cannot be reached"
    )
    with pytest.raises(InvalidArgument, match="is not a URI") as refused:
        LibvirtConfig(uri="root:Kvm-Other-Pa55@kvm1", host_iqn="iqn.2024-01.io.x:kvm1")
    assert "Kvm-Other-Pa55" not in str(refused.value)


def test_a_registered_secret_with_quotes_is_masked_as_a_quoted_command_line_shows_it() -> None:
    import shlex

    secret = "abc'def\"ghijk"
    redact.register(secret)
    try:
        line = shlex.join(["iscsiadm", "-n", "node.session.auth.password", "-v", secret])
        masked = redact.redact(line)
        assert "def" not in masked, masked
        assert "ghijk" not in masked, masked
    finally:
        redact.clear()
