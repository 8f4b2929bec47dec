"""ed25519 keys, record signatures, and remote configuration precedence."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lwrecipe.core.config.files import USER_CONFIG_ENV
from lwrecipe.core.errors import IntegrityError, RecipeError, UsageError
from lwrecipe.core.record import BuildRecord, Signature
from lwrecipe.remote.config import REMOTES_ENV, SIGNING_KEY_ENV, load_settings
from lwrecipe.remote.signing import check, generate, load_secret, parse_public, sign

RECORD = BuildRecord.from_document(
    {"key": "a" * 64, "name": "x", "output_id": "b" * 64, "blob": {"sha256": "c" * 64, "size": 1}, "log": "d" * 64}, "r"
)


@pytest.fixture
def keys(tmp_path: Path):
    pub_a = generate("alice", tmp_path / "alice.key")
    pub_b = generate("bob", tmp_path / "bob.key")
    return (load_secret(tmp_path / "alice.key"), pub_a), (load_secret(tmp_path / "bob.key"), pub_b)


def test_generated_key_is_private_and_round_trips(tmp_path: Path, keys) -> None:
    (secret, public), _ = keys
    assert oct((tmp_path / "alice.key").stat().st_mode & 0o777) == "0o600"
    assert parse_public(public.text()) == public == secret.public()
    assert "hidden" in repr(secret) and (tmp_path / "alice.key").read_text().split(":")[1].strip() not in repr(secret)
    with pytest.raises(UsageError, match="already exists"):
        generate("alice", tmp_path / "alice.key")


def test_group_readable_secret_key_is_refused(tmp_path: Path, keys) -> None:
    os.chmod(tmp_path / "alice.key", 0o640)
    with pytest.raises(UsageError, match="readable by group or others.*chmod 600"):
        load_secret(tmp_path / "alice.key")


def test_signature_checks(keys) -> None:
    (alice, alice_pub), (bob, bob_pub) = keys
    signed = sign(RECORD, alice)
    assert check(signed, {"alice": alice_pub}, "r") == "alice"
    assert check(sign(signed, bob), {"bob": bob_pub}, "r") == "bob"
    with pytest.raises(IntegrityError, match="untrusted key 'alice'"):
        check(signed, {"bob": bob_pub}, "r")
    with pytest.raises(IntegrityError, match="not signed"):
        check(RECORD, {"alice": alice_pub}, "r")
    forged = signed.model_copy(update={"output_id": "e" * 64})
    with pytest.raises(IntegrityError, match="'alice' does not verify"):
        check(forged, {"alice": alice_pub}, "r")
    impostor = RECORD.with_signatures((Signature(key="alice", sig=sign(RECORD, bob).signatures[0].sig),))
    with pytest.raises(IntegrityError, match="does not verify"):
        check(impostor, {"alice": alice_pub}, "r")


@pytest.mark.parametrize("text, message", [("nocolon", "NAME:BASE64"), ("k:!!!", "base64"), ("k:AAAA", "32 bytes")])
def test_bad_public_keys(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_public(text)


def test_remote_precedence(tmp_path: Path, keys) -> None:
    (_, alice_pub), (_, bob_pub) = keys
    project = tmp_path / "p"
    project.mkdir()
    (project / "lwrecipe.toml").write_text(
        f'trusted_keys = ["{alice_pub.text()}"]\n'
        '[[remote]]\nname = "team"\nurl = "https://cache.example.org/lw/"\npush = true\n'
        f'trusted_keys = ["{bob_pub.text()}"]\nauth_env = "TEAM_TOKEN"\ntimeout = 5\n'
    )
    user = tmp_path / "user.toml"
    user.write_text('signing_key = "alice.key"\n[[remote]]\nurl = "shared"\n')
    env = {USER_CONFIG_ENV: str(user)}
    configured = load_settings(project, env=env, accept=True)
    assert [r.name for r in configured.remotes] == ["team", f"file://{tmp_path / 'shared'}"]
    team = configured.remotes[0]
    assert team.url == "https://cache.example.org/lw" and team.push and team.timeout == 5
    assert set(configured.trust_for(team)) == {"alice", "bob"}
    assert configured.secret is not None and configured.secret.name == "alice"
    from_env = load_settings(project, env={**env, REMOTES_ENV: "team, /srv/c"}, accept=True)
    assert [r.url for r in from_env.remotes] == ["https://cache.example.org/lw", "file:///srv/c"]
    assert from_env.remotes[0].push  # settings come from the config entry of the same name
    cli = load_settings(project, ["/mnt/c"], env={**env, REMOTES_ENV: "team"}, accept=True)
    assert [r.url for r in cli.remotes] == ["file:///mnt/c"]
    with pytest.raises(UsageError, match="not a URL"):
        load_settings(project, ["nosuchname"], env=env, accept=True)
    with pytest.raises(UsageError):
        load_settings(project, env={**env, SIGNING_KEY_ENV: str(tmp_path / "missing.key")}, accept=True)


def test_two_trusted_keys_with_one_name_are_a_configuration_error(tmp_path: Path, keys) -> None:
    """A signature is checked against the key its name leads to: one name for two keys
    made which key decides a matter of precedence."""
    (_, alice_pub), _ = keys
    other = generate("alice", tmp_path / "alice-new.key")  # the key regenerated under the same name
    project = tmp_path / "p"
    project.mkdir()
    env = {USER_CONFIG_ENV: str(tmp_path / "none.toml")}
    (project / "lwrecipe.toml").write_text(f'trusted_keys = ["{alice_pub.text()}", "{other.text()}"]\n')
    with pytest.raises(UsageError, match="trusted_keys: trusted key 'alice' is not the key of that name in"):
        load_settings(project, env=env, accept=True)
    (project / "lwrecipe.toml").write_text(f'trusted_keys = ["{alice_pub.text()}"]\n')
    with pytest.raises(UsageError, match="LWRECIPE_TRUSTED_KEYS: trusted key 'alice'"):
        load_settings(project, env={**env, "LWRECIPE_TRUSTED_KEYS": other.text()}, accept=True)
    with pytest.raises(UsageError, match="the signing key: trusted key 'alice'"):
        load_settings(project, env={**env, SIGNING_KEY_ENV: str(tmp_path / "alice-new.key")}, accept=True)
    (project / "lwrecipe.toml").write_text(
        f'trusted_keys = ["{alice_pub.text()}"]\n[[remote]]\nurl = "https://c.example"\n'
        f'trusted_keys = ["{other.text()}"]\n'
    )
    with pytest.raises(UsageError, match="remote https://c.example: trusted_keys: trusted key 'alice'"):
        load_settings(project, env=env, accept=True)
    assert set(
        load_settings(
            project, env={**env, SIGNING_KEY_ENV: str(tmp_path / "alice.key")}, cli_remotes=["/mnt/c"], accept=True
        ).trusted
    ) == {"alice"}  # the same key twice is fine


def test_an_unaccepted_project_config_keeps_only_what_it_may_set(tmp_path: Path, keys) -> None:
    """Without the user's acceptance a project's remote is pulled from without
    credentials or keys of its own, and one warning names what was ignored; a name
    the user configured stays the user's remote."""
    (_, alice_pub), (_, bob_pub) = keys
    project = tmp_path / "p"
    project.mkdir()
    (project / "lwrecipe.toml").write_text(
        f'trusted_keys = ["{alice_pub.text()}"]\nsigning_key = "../alice.key"\n'
        '[[remote]]\nname = "team"\nurl = "https://cache.example.org/lw/"\npush = true\n'
        f'trusted_keys = ["{bob_pub.text()}"]\nauth_env = "TEAM_TOKEN"\ntimeout = 5\n'
        '[[remote]]\nname = "mine"\nurl = "https://evil.example/"\n'
    )
    user = tmp_path / "user.toml"
    user.write_text('min_signers = 2\n[[remote]]\nname = "mine"\nurl = "https://mine.example/c"\nauth_env = "MINE"\n')
    said: list[str] = []
    env = {USER_CONFIG_ENV: str(user)}
    settings = load_settings(project, env=env, warn=said.append)
    assert said == [
        f"{project / 'lwrecipe.toml'}: signing_key, trusted_keys, remote[0].push, remote[0].auth_env, "
        "remote[0].trusted_keys: ignored (a project's config cannot set these; accept with "
        f"--accept-project-config or [accept] projects in {user})"
    ]
    team = settings.remotes[0]
    assert (team.url, team.push, team.auth_env, team.trusted, team.timeout) == (
        "https://cache.example.org/lw",
        False,
        None,
        {},
        5,
    )
    assert settings.secret is None and settings.trusted == {} and settings.min_signers == 2
    assert load_settings(project, ["mine"], env=env, warn=said.append).remotes[0].url == "https://mine.example/c"
    user.write_text(f'[accept]\nprojects = ["{project}"]\n')
    said.clear()
    assert load_settings(project, env=env, warn=said.append).remotes[0].auth_env == "TEAM_TOKEN" and not said
    user.write_text('[accept]\nprojects = ["p"]\n')
    with pytest.raises(UsageError, match=r"user.toml: accept.projects\[0\]: 'p' is not an absolute directory"):
        load_settings(project, env=env)


def test_bad_config_names_file_and_field(tmp_path: Path) -> None:
    (tmp_path / "lwrecipe.toml").write_text('[[remote]]\nurl = "x"\npush = "yes"\n')
    with pytest.raises(RecipeError) as info:
        load_settings(tmp_path, env={USER_CONFIG_ENV: str(tmp_path / "none.toml")})
    assert "lwrecipe.toml: remote[0].push: expected a boolean, got string" in str(info.value)


def test_remote_urls_with_a_bad_port_or_no_host_are_refused(tmp_path: Path) -> None:
    """Refused where they are read, not as a traceback when the first request is made."""
    env = {USER_CONFIG_ENV: str(tmp_path / "none.toml")}
    (tmp_path / "lwrecipe.toml").write_text('[[remote]]\nurl = "http://cache:99999/lw"\nauth_env = "TOKEN"\n')
    with pytest.raises(UsageError, match=r"lwrecipe.toml: remote.url: http://cache:99999/lw: bad port"):
        load_settings(tmp_path, env=env)
    (tmp_path / "lwrecipe.toml").write_text("")
    with pytest.raises(UsageError, match="remote: http:///lw: no host"):
        load_settings(tmp_path, ["http:///lw"], env=env)
    with pytest.raises(UsageError, match="bad port"):
        load_settings(tmp_path, env={**env, REMOTES_ENV: "https://cache:port/x"})


def test_a_missing_or_empty_config_file_is_the_schema_defaults(tmp_path: Path) -> None:
    """read_config answers these without pydantic; what it answers must be what the schema says."""
    from lwrecipe.core.config.files import read_config
    from lwrecipe.core.config.schema import ConfigFile

    (tmp_path / "empty.toml").write_text("# nothing set\n")
    defaults = ConfigFile()
    for path in (tmp_path / "missing.toml", tmp_path / "empty.toml"):
        doc = read_config(path)
        assert (doc.signing_key, list(doc.trusted_keys), list(doc.remote)) == (
            defaults.signing_key,
            defaults.trusted_keys,
            defaults.remote,
        )


def test_signatures_are_matched_by_public_key_not_by_name(tmp_path: Path, keys) -> None:
    """A key regenerated under the same name has not signed what the old one did,
    and a verifier is told which case it is: unknown key, another key with a
    trusted name, or altered bytes."""
    from lwrecipe.remote.signing import fingerprint, signed_by

    (alice, alice_pub), (bob, bob_pub) = keys
    generate("alice", tmp_path / "alice2.key")
    alice2 = load_secret(tmp_path / "alice2.key")
    old = sign(RECORD, alice)
    assert signed_by(old, alice_pub) and not signed_by(old, alice2.public())
    with pytest.raises(IntegrityError) as exc:
        check(old, {"alice": alice2.public()}, "r")
    assert str(exc.value) == (
        f"r: signed by a key named 'alice' ({fingerprint(alice_pub.raw)}, not the trusted "
        f"{fingerprint(alice2.public().raw)}): a different key with a trusted name "
        "(regenerated, or an impostor); refused"
    )
    both = sign(old, alice2)
    assert [s.key for s in both.signatures] == ["alice", "alice"]
    assert check(both, {"alice": alice2.public()}, "r") == "alice" == check(both, {"alice": alice_pub}, "r")
    assert sign(both, alice2).signatures == both.signatures  # the same key signs once
    with pytest.raises(IntegrityError, match="untrusted key 'alice'"):
        check(old, {"bob": bob_pub}, "r")
    with pytest.raises(IntegrityError, match="bytes were altered"):
        check(both.model_copy(update={"name": "y"}), {"alice": alice2.public()}, "r")
