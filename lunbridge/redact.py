"""The one redaction rule: secret material never leaves lunbridge in text.

Every message that may quote configuration or a command line passes through `redact` before
it reaches a log line, an Event, a status, a gRPC error or an exception message: every
`LunbridgeError` does (so `CommandFailed` and `CommandTimedOut`, which quote argv and stderr,
do too), and `install_log_filter` puts the same rule on every log handler, which covers the
lines of kopf and of libraries that quote exceptions or tracebacks (also in JSON logs).

What it masks (with `***`):

- the password of a URL's user info: `https://admin:pw@vc/sdk` → `https://admin:***@vc/sdk`
  (a user name alone, `qemu+ssh://root@kvm1/system`, is kept);
- assignments to secret-looking names: `password=x`, `LUNBRIDGE_VSPHERE_PASSWORD=x`,
  `node.session.auth.password = x`, `"token": "x"`, `api_key=x`, `key=x`, …;
- command-line arguments: `--password x`, `--chap-secret x`, `--token x`, and the value of a
  secret-looking name, `iscsiadm … -n node.session.auth.password -v x`, `tgtadm … --name
  …password --value x`. The short `-p x` is not masked: in the commands lunbridge runs it
  means a portal (`iscsiadm -p`) or takes no value at all (`blkid -p`, `mkdir -p`); a
  password given there is still masked as a registered value;
- `Authorization:` headers and long `Bearer` tokens;
- every value `register`ed: the operator registers the vCenter password and every credential
  it reads, so such a value is masked wherever it shows up (in a path, a fault text, …).
  Values shorter than `MIN_REGISTERED` characters are not registered (masking every `pw` in
  every line would garble the logs and protect nothing).

Text without any of that is returned unchanged (and quickly: one search decides).
"""

from __future__ import annotations

import json
import logging
import re
import shlex
import threading
from urllib.parse import quote

MASK = "***"
MIN_REGISTERED = 6

# names whose value is a secret: password, passwd, pass, passphrase, pwd, secret, token,
# credential(s), and *key (api_key, access-key, key, ...)
_NAMES = (
    r"pass(?:word|wd|phrase)?|pwd|secret|token|credentials?|"
    r"(?:api|access|secret|private|auth|session)[_-]?key|key"
)
# names that are also ordinary words: `Secret: url, username` in a sentence is no assignment,
# so with `:` (not `=`) they count only when quoted, as a JSON or YAML key
_PROSE_NAMES = {"secret", "key", "credential", "credentials", "pass"}
# a value: a quoted string, or a run of characters up to a separator
_VALUE = r"""(?:"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[^\s,;&`'"()\[\]{}<>]+)"""

_HINTS = ("pass", "pwd", "secret", "token", "key", "credential", "authorization", "bearer", "@")
_URL = re.compile(r"""(?P<head>\b[a-z][a-z0-9+.-]*://[^\s:/'"<>]*):(?P<password>[^\s'"<>]*)@""", re.I)
_AUTHORIZATION = re.compile(
    r"""(?P<head>(?<![\w-])(?:proxy-)?authorization["']?\s*[:=]\s*)"""
    r"""(?P<value>"[^"]*"|'[^']*'|(?:(?:bearer|basic|digest|negotiate|token)\s+)?[^\s,;'"]+)""",
    re.IGNORECASE,
)
_BEARER = re.compile(r"(?P<head>\bbearer\s+)(?P<value>[A-Za-z0-9._~+/=-]{16,})", re.IGNORECASE)
_NAME_VALUE = re.compile(  # iscsiadm -n NAME -v VALUE, tgtadm --name NAME --value VALUE
    rf"""(?P<head>(?<![\w-])(?:-n|--name)[\s=]+["']?[\w.-]*(?:{_NAMES})[\w.-]*["']?\s+(?:-v|--value)[\s=]+)"""
    rf"(?P<value>{_VALUE})",
    re.IGNORECASE,
)
_FLAG = re.compile(
    r"(?P<head>(?<![\w-])--?(?:[\w-]*[_-])?"
    r"(?:pass(?:word|wd|phrase)?|secret|token|credentials?|(?:api|access|secret|private|auth)[_-]?key)"
    rf"\s+)(?!-)(?P<value>{_VALUE})",
    re.IGNORECASE,
)
_ASSIGNMENT = re.compile(
    rf"""(?<![\w.-])(?P<name>(?:[\w.-]*[._-])?(?:{_NAMES}))(?P<quote>["']?)(?P<sep>\s*[=:]\s*)"""
    rf"(?P<value>{_VALUE})",
    re.IGNORECASE,
)

_SECRET_NAME = re.compile(r"(?:pass(?:word|wd|phrase)?|pwd|secret|token|key|credentials?)$", re.IGNORECASE)

_lock = threading.Lock()
_registered: tuple[str, ...] = ()  # longest first


def _masked(value: str) -> str:
    """MASK in the quotes `value` had, if any."""
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return f"{value[0]}{MASK}{value[0]}"
    return MASK


def _url(match: re.Match[str]) -> str:
    return f"{match['head']}:{MASK}@"


def _head_and_mask(match: re.Match[str]) -> str:
    return match["head"] + _masked(match["value"])


def _assignment(match: re.Match[str]) -> str:
    value = match["value"]
    if value.strip("'\"").startswith(MASK):
        return match[0]  # masked already (e.g. the `user:***@` of a URL)
    name = match["name"].lstrip("-_.").lower()
    if ":" in match["sep"] and not match["quote"] and name in _PROSE_NAMES:
        return match[0]
    return f"{match['name']}{match['quote']}{match['sep']}{_masked(value)}"


def redact(text: str) -> str:
    """`text` with every secret in it replaced by `***` (see the module's docstring)."""
    for value in _registered:  # longest first: a value that contains another goes whole
        if value in text:
            text = text.replace(value, MASK)
    lower = text.lower()  # plain substring tests decide which rules can match at all
    if not any(word in lower for word in _HINTS):
        return text
    if "@" in text and "://" in text:
        text = _URL.sub(_url, text)
    if "authorization" in lower:
        text = _AUTHORIZATION.sub(_head_and_mask, text)
    if "bearer" in lower:
        text = _BEARER.sub(_head_and_mask, text)
    if "-" in text:
        text = _NAME_VALUE.sub(_head_and_mask, text)
        text = _FLAG.sub(_head_and_mask, text)
    if "=" in text or ":" in text:
        text = _ASSIGNMENT.sub(_assignment, text)
    return text


def is_secret_name(name: str) -> bool:
    """True if a setting or Secret key of this name holds a secret (`password`, `chapSecret`,
    `api-key`, `tls.key`, `token`, …): the operator registers the values of such keys."""
    return _SECRET_NAME.search(name) is not None


def register(value: str | None) -> None:
    """Mask `value` (and its URL-, JSON-, repr- and shell-quoted spellings: an error quotes a
    command line with `shlex.join`) in all text from now on."""
    global _registered
    if not value:
        return
    forms = {value, value.strip(), quote(value, safe=""), json.dumps(value)[1:-1], repr(value)[1:-1],
             shlex.quote(value)}  # fmt: skip
    new = {form for form in forms if len(form) >= MIN_REGISTERED}
    with _lock:
        if new <= set(_registered):
            return
        _registered = tuple(sorted(new | set(_registered), key=lambda form: (-len(form), form)))


def register_url(url: str | None) -> None:
    """Register the password of a URL's user info (`scheme://user:password@host/…`), if any."""
    if url and "://" in url:
        userinfo, at, _ = url.split("://", 1)[1].rpartition("@")
        if at and ":" in userinfo:
            register(userinfo.split(":", 1)[1])


def clear() -> None:
    """Forget every registered value (for tests)."""
    global _registered
    with _lock:
        _registered = ()


class RedactFilter(logging.Filter):
    """Applies `redact` to a record's message, traceback and stack before any handler formats
    it. The record is changed in place: its message is rendered (`args` emptied) and a
    traceback that needed masking is kept as text only (`exc_text`; `exc_info` is dropped,
    since JSON formatters render `exc_info` themselves and would show the original)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            try:
                message = record.getMessage()
            except Exception:  # a bad format: the handler reports it as logging does
                return True
            clean = redact(message)
            if clean != message:
                record.msg, record.args = clean, ()
        if record.exc_info and record.exc_info[0] is not None:
            text = record.exc_text or logging.Formatter().formatException(record.exc_info)
            clean = redact(text)
            if clean != text:
                record.exc_text, record.exc_info = clean, None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


_FILTER = RedactFilter()


def install_log_filter() -> RedactFilter:
    """Put the rule on the root logger and on every handler configured now (the root's, kopf's
    Event poster on `kopf.objects`, logging's last-resort stderr handler). A logger's filter
    sees only the records logged on that very logger, a handler's sees every record it
    emits: so call this after logging is configured (again after every reconfiguration)."""
    root = logging.getLogger()
    root.addFilter(_FILTER)
    handlers = list(root.handlers)
    for logger in list(logging.Logger.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger):
            handlers += logger.handlers
    if logging.lastResort is not None:
        handlers.append(logging.lastResort)
    for handler in handlers:
        handler.addFilter(_FILTER)  # once: addFilter ignores a filter it already has
    return _FILTER
