"""Client autoconfiguration documents built from the real listeners: Thunderbird autoconfig, Outlook Autodiscover (POX), Apple .mobileconfig.

Pure functions: values in, bytes out; the XML is built with xml.etree (never by pasting
strings), the profile with plistlib. The answers name the account only as the address the
client asked about (or Thunderbird's %EMAILADDRESS% placeholder), never whether it exists.
"""

from __future__ import annotations

import plistlib
import uuid
import xml.etree.ElementTree as ET

from .selfservice import Endpoint, MailListeners

# Thunderbird's autoconfig format (https://wiki.mozilla.org/Thunderbird:Autoconfiguration:ConfigFileFormat).
TB_SOCKET = {"tls": "SSL", "starttls": "STARTTLS", "none": "plain"}
# Outlook Autodiscover POX ([MS-OXDSCLI] §2.2.4): request and response namespaces.
AD_REQUEST_NS = "http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"
AD_RESPONSE_NS = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"
AD_OUTLOOK_NS = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
AD_ENCRYPTION = {"tls": "SSL", "starttls": "TLS", "none": "None"}
MAX_AUTODISCOVER_BYTES = 8192  # an Outlook request is a few hundred bytes
PROFILE_NS = uuid.UUID("5b0e3c64-8f3e-4b8e-9c55-7e9a3f1b2d10")  # stable profile UUIDs per (host, address)


def _sub(parent: ET.Element, tag: str, text: str | int | None = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, tag, attrs)
    if text is not None:
        el.text = str(text)
    return el


def _xml(root: ET.Element) -> bytes:
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def thunderbird(listeners: MailListeners, domains: list[str], *, display_name: str) -> bytes:
    """config-v1.1.xml: every listener, best first; the user name is the whole address."""
    root = ET.Element("clientConfig", version="1.1")
    provider = _sub(root, "emailProvider", id=listeners.hostname)
    for d in domains:
        _sub(provider, "domain", d)
    _sub(provider, "displayName", display_name)
    _sub(provider, "displayShortName", display_name)
    for kind, tag in (("imap", "incomingServer"), ("smtp", "outgoingServer")):
        for e in listeners.of(kind):
            server = _sub(provider, tag, type=kind)
            _sub(server, "hostname", listeners.hostname)
            _sub(server, "port", e.port)
            _sub(server, "socketType", TB_SOCKET[e.security])
            _sub(server, "authentication", "password-cleartext")  # inside TLS (RFC 8314)
            _sub(server, "username", "%EMAILADDRESS%")
    return _xml(root)


def autodiscover_request_address(body: bytes) -> str | None:
    """The EMailAddress of an Autodiscover POX request, or None when the body is not one.

    No DTDs at all (so no entity expansion or external entities), a size cap, one parse.
    """
    if len(body) > MAX_AUTODISCOVER_BYTES or b"<!" in body:
        return None
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return None
    el = root.find(f"{{{AD_REQUEST_NS}}}Request/{{{AD_REQUEST_NS}}}EMailAddress")
    if el is None:
        el = root.find("Request/EMailAddress")  # some clients leave the namespace out
    text = (el.text or "").strip() if el is not None else ""
    return text or None


def _ad_protocol(account: ET.Element, kind: str, e: Endpoint, host: str, login: str) -> None:
    p = _sub(account, "Protocol")
    _sub(p, "Type", kind.upper())
    _sub(p, "Server", host)
    _sub(p, "Port", e.port)
    _sub(p, "DomainRequired", "off")
    _sub(p, "LoginName", login)
    _sub(p, "SPA", "off")
    _sub(p, "SSL", "off" if e.security == "none" else "on")
    _sub(p, "Encryption", AD_ENCRYPTION[e.security])
    _sub(p, "AuthRequired", "on")


def autodiscover(listeners: MailListeners, address: str, *, display_name: str) -> bytes:
    """The POX answer ([MS-OXDSCLI] §2.2.4.2): the best IMAP and SMTP listener, log-in name = the address."""
    root = ET.Element("Autodiscover", xmlns=AD_RESPONSE_NS)
    resp = _sub(root, "Response", xmlns=AD_OUTLOOK_NS)
    user = _sub(resp, "User")
    _sub(user, "DisplayName", display_name)
    account = _sub(resp, "Account")
    _sub(account, "AccountType", "email")
    _sub(account, "Action", "settings")
    for kind in ("imap", "smtp"):
        e = listeners.best(kind)
        if e is not None:
            _ad_protocol(account, kind, e, listeners.hostname, address)
    return _xml(root)


def autodiscover_error(code: str, message: str) -> bytes:
    """An Autodiscover error answer ([MS-OXDSCLI] §2.2.4.2.1.2), e.g. 600 Invalid Request."""
    root = ET.Element("Autodiscover", xmlns=AD_RESPONSE_NS)
    resp = _sub(root, "Response")
    err = _sub(resp, "Error", Id="0", Time="00:00:00")
    _sub(err, "ErrorCode", code)
    _sub(err, "Message", message)
    _sub(err, "DebugData", "")
    return _xml(root)


def mobileconfig(listeners: MailListeners, address: str, *, display_name: str, description: str) -> bytes:
    """An Apple configuration profile with one IMAP account (com.apple.mail.managed), unsigned.

    No password is included: the device asks for it (an app password when the account
    has a second factor). UseSSL is true for implicit TLS and STARTTLS alike (Apple
    negotiates STARTTLS on the plain port).
    """
    imap, smtp = listeners.best("imap"), listeners.best("smtp")
    host = listeners.hostname
    account_uuid = uuid.uuid5(PROFILE_NS, f"{host}\0{address}\0account")
    payload = {
        "PayloadType": "com.apple.mail.managed", "PayloadVersion": 1,
        "PayloadIdentifier": f"{_reverse(host)}.postroom.mail.{account_uuid}",
        "PayloadUUID": str(account_uuid).upper(), "PayloadDisplayName": description,
        "EmailAccountType": "EmailTypeIMAP", "EmailAccountDescription": description,
        "EmailAccountName": display_name, "EmailAddress": address,
        "IncomingMailServerAuthentication": "EmailAuthPassword", "IncomingMailServerHostName": host,
        "IncomingMailServerUsername": address,
        "OutgoingMailServerAuthentication": "EmailAuthPassword", "OutgoingMailServerHostName": host,
        "OutgoingMailServerUsername": address, "OutgoingPasswordSameAsIncomingPassword": True,
    }
    if imap is not None:
        payload.update(IncomingMailServerPortNumber=imap.port, IncomingMailServerUseSSL=imap.security != "none")
    if smtp is not None:
        payload.update(OutgoingMailServerPortNumber=smtp.port, OutgoingMailServerUseSSL=smtp.security != "none")
    profile_uuid = uuid.uuid5(PROFILE_NS, f"{host}\0{address}\0profile")
    profile = {
        "PayloadType": "Configuration", "PayloadVersion": 1,
        "PayloadIdentifier": f"{_reverse(host)}.postroom.{profile_uuid}",
        "PayloadUUID": str(profile_uuid).upper(), "PayloadDisplayName": description,
        "PayloadDescription": description, "PayloadContent": [payload],
    }
    return plistlib.dumps(profile, fmt=plistlib.FMT_XML)


def _reverse(host: str) -> str:
    return ".".join(reversed(host.split(".")))
