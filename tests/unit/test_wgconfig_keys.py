"""Unit and property tests for dtservice/keys.py and dtservice/wgconfig.py (pure, no I/O)."""

from __future__ import annotations

import base64
import shutil
import subprocess

import pytest
from ansible_collections.sightline.dtservice.plugins.module_utils.rules import keys, wgconfig
from ansible_collections.sightline.dtservice.plugins.module_utils.rules.keys import (
    generate_private_key,
    is_valid_key,
    public_key_of,
)
from ansible_collections.sightline.dtservice.plugins.module_utils.rules.wgconfig import (
    Peer,
    render_setconf,
    render_uapi_set,
    render_wg_quick,
)
from cryptography.hazmat.primitives import serialization
from hypothesis import given, settings
from hypothesis import strategies as st

# RFC 7748 section 6.1, Alice's X25519 key pair.
RFC7748_PRIVATE = base64.b64encode(
    bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
).decode()
RFC7748_PUBLIC = base64.b64encode(
    bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
).decode()

raw_keys = st.binary(min_size=32, max_size=32)
b64_keys = raw_keys.map(lambda raw: base64.b64encode(raw).decode())


# ------------------------------------------------------------------------------- keys


def test_public_key_matches_rfc7748_vector():
    assert public_key_of(RFC7748_PRIVATE) == RFC7748_PUBLIC


def test_generated_keys_are_valid_distinct_and_clamped():
    keys = {generate_private_key() for _attempt in range(50)}
    assert len(keys) == 50
    for key in keys:
        assert is_valid_key(key) and len(key) == 44
        raw = base64.b64decode(key)
        assert raw[0] & 7 == 0 and raw[31] & 128 == 0 and raw[31] & 64 == 64
        assert is_valid_key(public_key_of(key))


@pytest.mark.skipif(shutil.which("wg") is None, reason="wg (wireguard-tools) not installed")
def test_public_key_agrees_with_wg_pubkey():
    for _attempt in range(5):
        private = generate_private_key()
        # the key goes through stdin, as wg pubkey is meant to be used
        out = subprocess.run(
            ["wg", "pubkey"],
            input=private + "\n",
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert out == public_key_of(private)


@given(b64_keys)
def test_any_32_bytes_in_base64_is_a_valid_key(key):
    assert is_valid_key(key)
    assert is_valid_key(public_key_of(key))


@given(st.one_of(st.text(), st.binary(), st.integers(), st.none()))
def test_is_valid_key_never_raises(value):
    assert is_valid_key(value) in (True, False)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "abc",
        base64.b64encode(b"\0" * 31).decode(),
        base64.b64encode(b"\0" * 33).decode(),
        base64.b64encode(b"\0" * 32).decode()[:-1] + "!",
        " " + base64.b64encode(b"\0" * 32).decode(),
        base64.b64encode(b"\0" * 32).decode() + "\n",
        "é" * 44,
    ],
)
def test_invalid_keys(text):
    assert not is_valid_key(text)


def test_a_public_key_is_derived_once_and_remembered_by_digest_never_by_the_private_key(monkeypatch):
    private = generate_private_key()
    raw = base64.b64decode(private)
    public = keys.X25519PrivateKey.from_private_bytes(raw).public_key()
    expected = base64.b64encode(public.public_bytes(serialization.Encoding.Raw,
                                                    serialization.PublicFormat.Raw)).decode()
    derived = []
    real = keys.X25519PrivateKey

    class Counting:
        @staticmethod
        def from_private_bytes(data):
            derived.append(data)
            return real.from_private_bytes(data)

    monkeypatch.setattr(keys, "X25519PrivateKey", Counting)
    assert [public_key_of(private) for _pass in range(3)] == [expected] * 3
    assert derived == [raw]
    assert all(k not in (raw, private) and v != private for k, v in keys._PUBLIC_KEYS.items())


def test_public_key_of_rejects_bad_input_without_echoing_it():
    secret_looking = "NOTAKEY" + "x" * 37
    with pytest.raises(ValueError) as info:
        public_key_of(secret_looking)
    assert secret_looking not in str(info.value)


# -------------------------------------------------------------------------- rendering

HUB_PRIV = generate_private_key()
C1 = public_key_of(generate_private_key())
C2 = public_key_of(generate_private_key())


def test_templates_are_module_level_strings_and_env_is_strict_sandbox():
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    for template in (
        wgconfig.SETCONF_TEMPLATE,
        wgconfig.WG_QUICK_TEMPLATE,
        wgconfig.PEERS_TEMPLATE,
    ):
        assert isinstance(template, str)
    assert isinstance(wgconfig._environment(), SandboxedEnvironment)
    assert wgconfig._environment().undefined is StrictUndefined


def test_setconf_exact_text():
    text = render_setconf(
        private_key=HUB_PRIV,
        listen_port=51820,
        peers=[
            Peer(
                public_key=C1,
                allowed_ips=["100.96.250.2/32"],
                endpoint=None,
                persistent_keepalive=None,
            ),
            Peer(
                public_key=C2,
                allowed_ips=["100.96.250.3/32", "10.1.0.0/16"],
                endpoint="198.18.1.12:51821",
                persistent_keepalive=25,
            ),
        ],
    )
    assert text == (
        "[Interface]\n"
        f"PrivateKey = {HUB_PRIV}\n"
        "ListenPort = 51820\n"
        "\n"
        "[Peer]\n"
        f"PublicKey = {C1}\n"
        "AllowedIPs = 100.96.250.2/32\n"
        "\n"
        "[Peer]\n"
        f"PublicKey = {C2}\n"
        "AllowedIPs = 100.96.250.3/32, 10.1.0.0/16\n"
        "Endpoint = 198.18.1.12:51821\n"
        "PersistentKeepalive = 25\n"
    )


def test_setconf_omits_unset_interface_fields_and_empty_allowed_ips():
    text = render_setconf(private_key=None, listen_port=None, peers=[Peer(public_key=C1, allowed_ips=[])])
    assert text == f"[Interface]\n\n[Peer]\nPublicKey = {C1}\n"
    assert render_setconf(private_key=None, listen_port=None, peers=[]) == "[Interface]\n"


def test_keepalive_zero_is_rendered():
    # a sync needs an explicit 0 to switch a live keepalive off
    text = render_setconf(
        private_key=None,
        listen_port=None,
        peers=[Peer(public_key=C1, allowed_ips=["100.96.250.2/32"], persistent_keepalive=0)],
    )
    assert "PersistentKeepalive = 0\n" in text


def hex_of(key: str) -> str:
    return base64.b64decode(key).hex()


def _no_names(host: str, port: int) -> list[str]:
    raise AssertionError(f"{host} should not be looked up")


def test_uapi_set_exact_text():
    text = render_uapi_set(private_key=HUB_PRIV, listen_port=51820, resolve=_no_names, peers=[
        Peer(public_key=C1, allowed_ips=["100.96.250.2/32"]),
        Peer(public_key=C2, allowed_ips=["100.96.250.3/32", "10.1.0.0/16"], endpoint="198.18.1.12:51821",
             persistent_keepalive=25),
    ])
    assert text == (
        f"set=1\nprivate_key={hex_of(HUB_PRIV)}\nlisten_port=51820\nreplace_peers=true\n"
        f"public_key={hex_of(C1)}\nreplace_allowed_ips=true\nallowed_ip=100.96.250.2/32\n"
        f"public_key={hex_of(C2)}\nreplace_allowed_ips=true\nendpoint=198.18.1.12:51821\n"
        "persistent_keepalive_interval=25\nallowed_ip=100.96.250.3/32\nallowed_ip=10.1.0.0/16\n\n"
    )


def test_uapi_set_without_port_or_peers_keeps_neither():
    text = render_uapi_set(private_key=HUB_PRIV, listen_port=None, peers=[], resolve=_no_names)
    assert text == f"set=1\nprivate_key={hex_of(HUB_PRIV)}\nreplace_peers=true\n\n"


def test_uapi_set_resolves_a_name_to_its_first_address_as_wg_does():
    asked = []

    def resolve(host: str, port: int) -> list[str]:
        asked.append((host, port))
        return ["fd00::7%eth0", "198.18.0.9"]

    text = render_uapi_set(private_key=HUB_PRIV, listen_port=None, resolve=resolve,
                           peers=[Peer(public_key=C1, allowed_ips=["100.96.0.0/24"], endpoint="hub.example:51820")])
    assert asked == [("hub.example", 51820)]
    assert "\nendpoint=[fd00::7]:51820\n" in text
    bracketed = render_uapi_set(private_key=HUB_PRIV, listen_port=None, resolve=_no_names,
                                peers=[Peer(public_key=C1, allowed_ips=[], endpoint="[fd00::1]:51820")])
    assert "\nendpoint=[fd00::1]:51820\n" in bracketed


def test_uapi_set_refuses_an_endpoint_that_does_not_resolve_and_a_bad_key():
    with pytest.raises(ValueError, match="does not resolve"):
        render_uapi_set(private_key=HUB_PRIV, listen_port=None, resolve=lambda host, port: [],
                        peers=[Peer(public_key=C1, allowed_ips=[], endpoint="nowhere.invalid:51820")])
    with pytest.raises(ValueError, match="not a WireGuard key") as refused:
        render_uapi_set(private_key="c2VjcmV0", listen_port=None, peers=[], resolve=_no_names)
    assert "c2VjcmV0" not in str(refused.value)


@settings(max_examples=50)
@given(private=b64_keys, port=st.one_of(st.none(), st.integers(1, 65535)),
       peers=st.lists(st.tuples(b64_keys, st.lists(st.integers(0, 255), max_size=3), st.integers(1, 65535)),
                      max_size=4, unique_by=lambda peer: peer[0]))
def test_uapi_set_reads_back_as_the_interface_it_configures(private, port, peers):
    """What wireguard-go would hold after the request, read by the project's own UAPI reader."""
    from ansible_collections.sightline.dtservice.plugins.module_utils.rules.probe import parse_uapi
    wanted = [Peer(public_key=key, allowed_ips=[f"100.96.0.{octet}/32" for octet in octets],
                   endpoint=f"198.18.0.1:{endpoint_port}") for key, octets, endpoint_port in peers]
    state = parse_uapi(render_uapi_set(private_key=private, listen_port=port, peers=wanted, resolve=_no_names))
    assert state.public_key == public_key_of(private)
    assert state.listen_port == (port or 0)
    assert {key: (live.allowed_ips, live.endpoint) for key, live in state.peers.items()} == {
        peer.public_key: (peer.allowed_ips, peer.endpoint) for peer in wanted}


def test_wg_quick_has_no_secret_and_names_key_file():
    peers = [
        Peer(
            public_key=public_key_of(HUB_PRIV),
            allowed_ips=["100.96.250.0/24"],
            endpoint="198.18.1.10:51820",
            persistent_keepalive=25,
        )
    ]
    text = render_wg_quick(
        interface_name="dt-abc123",
        address="100.96.250.2/24",
        mtu=1380,
        listen_port=51821,
        peers=peers,
        private_key_path="/etc/dtservice/dt-abc123.key",
    )
    assert HUB_PRIV not in text
    lines = text.splitlines()
    assert not any(line.startswith("PrivateKey") for line in lines)
    assert "# PrivateKey = <contents of /etc/dtservice/dt-abc123.key>" in lines
    assert "PostUp = wg set %i private-key /etc/dtservice/dt-abc123.key" in lines
    assert "Address = 100.96.250.2/24" in lines
    assert "MTU = 1380" in lines
    assert "ListenPort = 51821" in lines
    assert "Endpoint = 198.18.1.10:51820" in lines
    assert text.endswith("PersistentKeepalive = 25\n")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"public_key": "nope", "allowed_ips": []},
        {"public_key": C1, "allowed_ips": ["100.96.250.2/32\nPrivateKey = x"]},
        {"public_key": C1, "allowed_ips": ["300.1.1.1/32"]},
        {
            "public_key": C1,
            "allowed_ips": [],
            "endpoint": "198.18.1.10:51820\nPrivateKey = x",
        },
        {"public_key": C1, "allowed_ips": [], "endpoint": "198.18.1.10"},
        {"public_key": C1, "allowed_ips": [], "endpoint": "198.18.1.10:70000"},
        {"public_key": C1, "allowed_ips": [], "endpoint": "bad host:1"},
        {"public_key": C1, "allowed_ips": [], "persistent_keepalive": -1},
        {"public_key": C1, "allowed_ips": [], "persistent_keepalive": True},
    ],
)
def test_peer_rejects_values_that_could_break_or_inject_config(kwargs):
    with pytest.raises(ValueError):
        Peer(**kwargs)


def test_peer_rejects_string_allowed_ips():
    with pytest.raises(TypeError):
        Peer(public_key=C1, allowed_ips="100.96.250.2/32")


def test_peer_accepts_ipv6_and_dns_endpoints():
    Peer(public_key=C1, allowed_ips=["fd00::2/128"], endpoint="[fd00::1]:51820")
    Peer(public_key=C1, allowed_ips=[], endpoint="node-1.example.org:51820")


def test_render_rejects_duplicates_bad_interface_values_and_paths():
    peer = Peer(public_key=C1, allowed_ips=[])
    with pytest.raises(ValueError):
        render_setconf(private_key=None, listen_port=None, peers=[peer, peer])
    with pytest.raises(ValueError):
        render_setconf(private_key="secret\n[Peer]", listen_port=None, peers=[])
    with pytest.raises(ValueError):
        render_setconf(private_key=None, listen_port=0, peers=[])
    good = {
        "interface_name": "dt0",
        "address": "100.96.250.2/24",
        "mtu": 1420,
        "listen_port": None,
        "peers": [],
        "private_key_path": "/k",
    }
    render_wg_quick(**good)
    for key, bad in [
        ("interface_name", "a-name-that-is-too-long"),
        ("address", "100.96.250.2/24\nDNS = 1.1.1.1"),
        ("mtu", 100),
        ("private_key_path", "relative/key"),
        ("private_key_path", "/k\nPostUp = rm -rf /"),
    ]:
        with pytest.raises(ValueError):
            render_wg_quick(**{**good, key: bad})


def _parse(text: str) -> tuple[dict[str, str], list[dict[str, str]]]:
    """Minimal wg(8) config reader: the [Interface] fields and a list of [Peer] fields."""
    sections: list[dict[str, str]] = []
    for line in text.splitlines():
        if line in ("[Interface]", "[Peer]"):
            sections.append({})
        elif line.strip():
            key, _sep, value = line.partition(" = ")
            assert key not in sections[-1], f"duplicate {key}"
            sections[-1][key] = value
    return sections[0], sections[1:]


peers_strategy = st.lists(
    st.builds(
        Peer,
        public_key=b64_keys,
        allowed_ips=st.lists(
            st.builds(
                lambda a, b, n: f"100.96.{a}.{b}/{n}",
                st.integers(0, 255),
                st.integers(0, 255),
                st.integers(12, 32),
            ),
            max_size=3,
        ),
        endpoint=st.one_of(
            st.none(),
            st.builds(
                lambda h, p: f"198.18.1.{h}:{p}",
                st.integers(1, 254),
                st.integers(1, 65535),
            ),
        ),
        persistent_keepalive=st.one_of(st.none(), st.integers(0, 65535)),
    ),
    max_size=6,
    unique_by=lambda p: p.public_key,
)


@settings(max_examples=200)
@given(
    private=st.one_of(st.none(), b64_keys),
    port=st.one_of(st.none(), st.integers(1, 65535)),
    peers=peers_strategy,
)
def test_setconf_round_trips(private, port, peers):
    interface, parsed = _parse(render_setconf(private_key=private, listen_port=port, peers=peers))
    assert interface.get("PrivateKey") == private
    assert interface.get("ListenPort") == (None if port is None else str(port))
    assert len(parsed) == len(peers)
    for peer, fields in zip(peers, parsed, strict=True):
        assert fields["PublicKey"] == peer.public_key
        allowed = fields.get("AllowedIPs")
        assert (allowed.split(", ") if allowed else []) == peer.allowed_ips
        assert fields.get("Endpoint") == peer.endpoint
        keepalive = fields.get("PersistentKeepalive")
        assert keepalive == (None if peer.persistent_keepalive is None else str(peer.persistent_keepalive))


@given(private=b64_keys, peers=peers_strategy)
def test_wg_quick_never_contains_a_private_key(private, peers):
    text = render_wg_quick(
        interface_name="dt0",
        address="100.96.250.1/24",
        mtu=1420,
        listen_port=51820,
        peers=peers,
        private_key_path="/etc/dtservice/dt0.key",
    )
    assert private not in text
    assert "PrivateKey =" not in text.replace("# PrivateKey =", "")
