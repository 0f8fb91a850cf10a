"""The redactor as an attacker (or a careless tool) would test it: secret keys spelled every way, credentials in
headers, URLs and header lists, JSON hidden inside strings, and what must NOT be redacted."""

from __future__ import annotations

import base64
import json
from typing import Any

import orjson
import pytest

from execution_service.redaction import (
    DEEP_MARKER,
    REDACTED,
    RedactionRules,
    Redactor,
    SecretMemory,
    normalise_key,
    rules_with_extras,
)

SECRET = "s3cr3t-VALUE-9876"

SECRET_KEYS = [
    "password",
    "Password",
    "PASSWORD",
    "accessToken",
    "refreshToken",
    "authToken",
    "userPassword",
    "dbPassword",
    "secretAccessKey",
    "pwd",
    "passwd",
    "passphrase",
    "x-api-key",
    "X-Api-Key",
    "apiKey",
    "APIKey",
    "api_key",
    "apikey",
    "client_secret",
    "clientSecret",
    "private_key",
    "privateKey",
    "set-cookie",
    "Set-Cookie",
    "cookie",
    "session_id",
    "sessionId",
    "SESSION_ID",
    "token",
    "auth_token",
    "access_token",
    "id_token",
    "OAuthToken",
    "Authorization",
    "auth",
    "credentials",
    "db.password",
    "password2",
    "github_token_value",
]

NON_SECRET_KEYS = [
    "max_tokens",
    "maxTokens",
    "token_count",
    "tokenCount",
    "total_tokens",
    "input_tokens",
    "auth_method",
    "authMethod",
    "credential_type",
    "token_type",
    "token_expires_at",
    "password_policy",
    "author",
    "authority",
    "oauth_provider",
    "OAuthProvider",
    "username",
    "user",
    "session",
    "keyboard",
    "passport_number",
    "bypass",
    "compass",
    "secretary_name",
    "tokenizer",
    "api_key_name",
]


@pytest.mark.parametrize("key", SECRET_KEYS)
def test_secret_keys_are_redacted_however_they_are_spelled(key: str) -> None:
    redactor = Redactor()
    assert redactor.is_secret_key(key), normalise_key(key)
    assert redactor.scrub_value({key: SECRET, "n": 1}) == {key: REDACTED, "n": 1}
    # ... and as a `key: value` / `key=value` pair in free text.
    for text in (f"{key}: {SECRET}", f"{key}={SECRET}&next=1", f'{{"{key}": "{SECRET}"}} (log line)'):
        scrubbed = redactor.scrub_text(text)
        assert SECRET not in scrubbed and REDACTED in scrubbed and key in scrubbed, (text, scrubbed)


@pytest.mark.parametrize("key", NON_SECRET_KEYS)
def test_keys_that_only_describe_or_contain_a_secret_word_are_kept(key: str) -> None:
    redactor = Redactor()
    assert not redactor.is_secret_key(key), normalise_key(key)
    value = {key: "kept-value-1234", "nested": {key: 42}}
    assert redactor.scrub_value(value) is value
    text = f"{key}: kept-value-1234, {key}=42"
    assert redactor.scrub_text(text) == text


def test_usage_counts_survive_next_to_redacted_tokens() -> None:
    usage = {"max_tokens": 512, "token_count": 17, "total_tokens": 99, "accessToken": "abc", "token": "xyz"}
    assert Redactor().scrub_value(usage) == {
        "max_tokens": 512,
        "token_count": 17,
        "total_tokens": 99,
        "accessToken": REDACTED,
        "token": REDACTED,
    }


def test_key_normalisation() -> None:
    assert normalise_key("refreshToken") == "refresh_token"
    assert normalise_key("X-Api-Key") == "x_api_key"
    assert normalise_key("APIKey") == "api_key"
    assert normalise_key("OAuthToken") == "oauth_token"
    assert normalise_key("HTTPAuthHeader") == "http_auth_header"
    assert normalise_key("db.password") == "db_password"
    assert normalise_key("  API key ") == "api_key"
    assert normalise_key("password2") == "password_2"


def test_configured_keys_and_suffixes_still_work() -> None:
    rules = rules_with_extras(enabled=True, max_result_bytes=1024, extra_keys=("ssn", "iban"))
    redactor = Redactor(rules)
    assert redactor.scrub_value({"customerSsn": "078-05-1120", "IBAN": "DE89370400440532013000", "n": 1}) == {
        "customerSsn": REDACTED,
        "IBAN": REDACTED,
        "n": 1,
    }
    assert redactor.scrub_text("customer-ssn=078-05-1120") == f"customer-ssn={REDACTED}"
    # Configured regexes written with `-` or `\.` still match however the key is spelled.
    dashed = Redactor(rules_with_extras(enabled=True, max_result_bytes=1024, extra_keys=("x-tenant-key", r"db\.dsn")))
    for key in ("X-Tenant-Key", "xTenantKey", "x_tenant_key", "db.dsn", "dbDsn"):
        assert dashed.is_secret_key(key), key
    assert not dashed.is_secret_key("tenant_key")
    # The words that make a key descriptive are a rule too.
    strict = Redactor(RedactionRules(non_secret_suffixes=()))
    assert strict.scrub_value({"token_count": 3}) == {"token_count": REDACTED}
    off = Redactor(RedactionRules(enabled=False))
    assert off.scrub_value({"password": SECRET}) == {"password": SECRET}


def test_booleans_and_empty_values_under_secret_keys_are_kept() -> None:
    value = {"auth": False, "password": "", "token": None, "has_password": True}
    assert Redactor().scrub_value(value) is value


# --- free text: schemes, Basic, URLs ------------------------------------------------------------------------------

BASIC = base64.b64encode(b"svc-user:correct-horse-battery").decode()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Basic dXNlcjpwYXNzd29yZA==", f"Authorization: {REDACTED}"),
        ("authorization=Basic dXNlcjpwYXNzd29yZA==; next", f"authorization={REDACTED}; next"),
        ("Authorization: Digest abcdef0123456789", f"Authorization: {REDACTED}"),
        ("Proxy-Authorization: Negotiate YIIGhgYJKoZIhvcSAQICAQBuggZ1", f"Proxy-Authorization: {REDACTED}"),
        ("Authorization: Token 0123456789abcdef", f"Authorization: {REDACTED}"),
        ("Authorization: Bearer abcdefghijklmnop", f"Authorization: {REDACTED}"),
        (f"curl -H 'Authorization: Basic {BASIC}' https://api", f"curl -H 'Authorization: {REDACTED}' https://api"),
        (f"sent Basic {BASIC} to the proxy", f"sent {REDACTED} to the proxy"),
        ("Basic configuration is described in basic terms", "Basic configuration is described in basic terms"),
        ("Basic aGVsbG8gd29ybGQ= is hello world, no colon", "Basic aGVsbG8gd29ybGQ= is hello world, no colon"),
    ],
)
def test_authorization_schemes_are_redacted_with_their_credentials(text: str, expected: str) -> None:
    assert Redactor().scrub_text(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "postgres://admin:pa55-word@db.example.com:5432/app",
            f"postgres://admin:{REDACTED}@db.example.com:5432/app",
        ),
        ("see https://bob:hunter22@example.com/path?x=1 now", f"see https://bob:{REDACTED}@example.com/path?x=1 now"),
        ("redis://:only-a-password@cache:6379/0", f"redis://:{REDACTED}@cache:6379/0"),
        ("amqp://me@corp.com:p@ss:word@mq.host/vhost", f"amqp://me@corp.com:{REDACTED}@mq.host/vhost"),
        ("https://example.com:8443/a@b and ftp://host/x", "https://example.com:8443/a@b and ftp://host/x"),
        ("mailto:someone@example.com", "mailto:someone@example.com"),
    ],
)
def test_passwords_in_urls_are_redacted_and_scheme_user_and_host_kept(text: str, expected: str) -> None:
    assert Redactor().scrub_text(text) == expected


def test_pairs_hidden_in_the_value_of_a_harmless_pair_are_found() -> None:
    redactor = Redactor()
    assert redactor.scrub_text("note: password=hunter22") == f"note: password={REDACTED}"
    assert (
        redactor.scrub_text("accessToken=abcdef123456 and x-api-key: key-1234567")
        == f"accessToken={REDACTED} and x-api-key: {REDACTED}"
    )
    assert redactor.scrub_text("Your API key: AKabc123456.") == f"Your API key: {REDACTED}"
    # Prose whose key merely starts with a secret word keeps its value.
    assert redactor.scrub_text("The secret to success: hard work") == "The secret to success: hard work"
    assert redactor.scrub_text("if token == 'x': pass") == "if token == 'x': pass"


def test_escaped_json_in_text_is_redacted() -> None:
    text = 'payload was "{\\"password\\": \\"esc-secret-1\\", \\"n\\": 1}"'
    assert Redactor().scrub_text(text) == f'payload was "{{\\"password\\": \\"{REDACTED}\\", \\"n\\": 1}}"'


# --- header lists -------------------------------------------------------------------------------------------------


def test_header_lists_redact_the_value_of_secret_names() -> None:
    headers = {
        "headers": [
            {"name": "Authorization", "value": "Basic opaque-credential"},
            {"name": "Content-Type", "value": "application/json"},
            {"key": "X-Api-Key", "value": "opaque-api-key"},
            {"header": "Cookie", "value": "sid=opaque"},
            {"Name": "set-cookie", "Value": "sid=opaque; Path=/"},
        ],
        "env": [{"name": "DB_PASSWORD", "value": "opaque-db"}, {"name": "REGION", "value": "eu-west-1"}],
        "field": {"name": "a sentence about the password reset", "value": 3},
    }
    assert Redactor().scrub_value(headers) == {
        "headers": [
            {"name": "Authorization", "value": REDACTED},
            {"name": "Content-Type", "value": "application/json"},
            {"key": "X-Api-Key", "value": REDACTED},
            {"header": "Cookie", "value": REDACTED},
            {"Name": "set-cookie", "Value": REDACTED},
        ],
        "env": [{"name": "DB_PASSWORD", "value": REDACTED}, {"name": "REGION", "value": "eu-west-1"}],
        "field": {"name": "a sentence about the password reset", "value": 3},
    }


# --- JSON inside strings ------------------------------------------------------------------------------------------


def test_double_encoded_json_is_scrubbed_structurally() -> None:
    inner = {"refreshToken": SECRET, "user": "alice", "token_count": 3}
    value = {"payload": json.dumps(inner), "list": [json.dumps([inner])]}
    scrubbed = Redactor().scrub_value(value)
    assert json.loads(scrubbed["payload"]) == {"refreshToken": REDACTED, "user": "alice", "token_count": 3}
    assert json.loads(scrubbed["list"][0]) == [{"refreshToken": REDACTED, "user": "alice", "token_count": 3}]


def test_triple_encoded_json_in_a_tool_result_and_in_structured_content() -> None:
    redactor = Redactor()
    once = json.dumps({"password": SECRET})
    twice = json.dumps(once)  # a JSON string holding JSON text
    result = json.dumps({"result": twice})
    out = redactor.scrub_result_text(result)
    assert SECRET not in out
    assert json.loads(json.loads(json.loads(out)["result"])) == {"password": REDACTED}
    assert SECRET not in redactor.scrub_json_text(json.dumps({"structuredContent": {"body": once}}))


def test_json_in_strings_is_decoded_a_bounded_number_of_times() -> None:
    text: Any = {"password": SECRET}
    for _ in range(10):
        text = json.dumps(text)
    # Deeper than the bound: scanned as text, where the escaped pair still matches.
    assert SECRET not in Redactor().scrub_value({"x": text})


def test_nothing_secret_means_the_same_objects_and_text_back() -> None:
    redactor = Redactor()
    value = {"a": [1, 2.5, "text", {"b": None, "c": json.dumps({"d": "e"})}], "token_count": 4}
    assert redactor.scrub_value(value) is value
    text = json.dumps(value, indent=2)  # not re-serialised: formatting kept
    assert redactor.scrub_result_text(text) is text
    assert redactor.scrub_json_text(text) is text


def test_structures_nested_deeper_than_the_limit_are_cut_not_crashing() -> None:
    deep = "[" * 600 + "]" * 600
    out = Redactor().scrub_json_text(deep)
    assert DEEP_MARKER in out and orjson.loads(out)
    arguments: Any = {"password": SECRET}
    for _ in range(300):
        arguments = {"n": arguments}
    assert SECRET not in orjson.dumps(Redactor().scrub_value(arguments)).decode()


# --- memory ---------------------------------------------------------------------------------------------------------


def test_memory_scrubs_values_it_redacted_when_they_come_back_in_prose() -> None:
    redactor, memory = Redactor(), SecretMemory()
    redactor.scrub_value({"refreshToken": "refresh-secret-456", "pin": "1234", "password": 12345678}, memory)
    redactor.scrub_text("Authorization: Bearer bearer-token-abcdef", memory)
    redactor.scrub_text(f"db at postgres://app:url-pass-123@db/x, Basic {BASIC}", memory)
    prose = (
        "the refreshToken is refresh-secret-456, pin 1234, password 12345678, the bearer token "
        "bearer-token-abcdef, the db password url-pass-123 and the proxy one correct-horse-battery"
    )
    scrubbed = redactor.scrub_text(prose, memory)
    for secret in ("refresh-secret-456", "12345678", "bearer-token-abcdef", "url-pass-123", "correct-horse-battery"):
        assert secret not in scrubbed
    assert "pin 1234" in scrubbed  # under 6 characters: not remembered, common short words survive


def test_memory_applies_to_strings_scrubbed_before_the_secret_was_found() -> None:
    redactor, memory = Redactor(), SecretMemory()
    out = redactor.scrub_value({"note": "use abc-def-ghi-123 to log in", "token": "abc-def-ghi-123"}, memory)
    assert out == {"note": f"use {REDACTED} to log in", "token": REDACTED}


def test_memory_remembers_the_leaves_of_redacted_containers() -> None:
    redactor, memory = Redactor(), SecretMemory()
    redactor.scrub_value({"credentials": {"user": "svc", "key": "leaf-secret-77"}}, memory)
    redactor.scrub_value({"auth": json.dumps({"pw": "json-leaf-secret"})}, memory)
    assert redactor.scrub_text("leaf-secret-77 / json-leaf-secret", memory) == f"{REDACTED} / {REDACTED}"


# -- passwords on command lines ---------------------------------------------------------------------------------------

COMMAND_LINES_REDACTED = [
    ("mysql -u root -pS3cretPass mydb", "mysql -u root -p[REDACTED] mydb", "S3cretPass"),
    ("mysqldump -uroot -p'S3 cr et' --all-databases", "mysqldump -uroot -p'[REDACTED]' --all-databases", "S3 cr et"),
    ('mysql -h db -p"S3cret!" mydb', 'mysql -h db -p"[REDACTED]" mydb', "S3cret!"),
    ("mariadb-dump -pS3cretPass db", "mariadb-dump -p[REDACTED] db", "S3cretPass"),
    ("mysql --password=S3cretPass db", "mysql --password=[REDACTED] db", "S3cretPass"),
    ("app --password S3cretPass --verbose", "app --password [REDACTED] --verbose", "S3cretPass"),
    ("deploy --db-password 'S3 cret' now", "deploy --db-password '[REDACTED]' now", "S3 cret"),
    ("cli --api-key ak_0123456789 list", "cli --api-key [REDACTED] list", "ak_0123456789"),
    ("PGPASSWORD=S3cretPass psql -h db -U app", "PGPASSWORD=[REDACTED] psql -h db -U app", "S3cretPass"),
    ("MYSQL_PWD=S3cretPass mysql -u app", "MYSQL_PWD=[REDACTED] mysql -u app", "S3cretPass"),
    ("SSHPASS=S3cretPass sshpass -e ssh host", "SSHPASS=[REDACTED] sshpass -e ssh host", "S3cretPass"),
    ("sshpass -p S3cretPass ssh admin@host", "sshpass -p [REDACTED] ssh admin@host", "S3cretPass"),
    ("sshpass -pS3cretPass scp f host:", "sshpass -p[REDACTED] scp f host:", "S3cretPass"),
    ("redis-cli -h cache -a S3cretPass ping", "redis-cli -h cache -a [REDACTED] ping", "S3cretPass"),
    ("docker login -u me -p S3cretPass ghcr.io", "docker login -u me -p [REDACTED] ghcr.io", "S3cretPass"),
    ("curl -u admin:S3cretPass https://x", "curl -u admin:[REDACTED] https://x", "S3cretPass"),
    ("curl --user admin:S3cretPass https://x", "curl --user admin:[REDACTED] https://x", "S3cretPass"),
    ("$ mysql -pA1b2C3d4; ls -p /tmp", "$ mysql -p[REDACTED]; ls -p /tmp", "A1b2C3d4"),
    ("sqlcmd -S db -U sa -P S3cretPass -Q 'select 1'", "sqlcmd -S db -U sa -P [REDACTED] -Q 'select 1'", "S3cretPass"),
    ("bcp t out f.dat -S db -U sa -PS3cretPass", "bcp t out f.dat -S db -U sa -P[REDACTED]", "S3cretPass"),
    ("az login -u me@corp.example -p S3cretPass", "az login -u me@corp.example -p [REDACTED]", "S3cretPass"),
    (
        "az login --service-principal -u app -p 'S3 cret' --tenant t",
        "az login --service-principal -u app -p '[REDACTED]' --tenant t",
        "S3 cret",
    ),
    ("az login -u me --password S3cretPass", "az login -u me --password [REDACTED]", "S3cretPass"),
    (
        "keytool -list -keystore ks.jks -storepass S3cretPass",
        "keytool -list -keystore ks.jks -storepass [REDACTED]",
        "S3cretPass",
    ),
    (
        "keytool -genkeypair -alias a -keypass S3cretPass -v",
        "keytool -genkeypair -alias a -keypass [REDACTED] -v",
        "S3cretPass",
    ),
    (
        "keytool -importkeystore -srcstorepass S3cretPass -deststorepass '[REDACTED]'",
        "keytool -importkeystore -srcstorepass [REDACTED] -deststorepass '[REDACTED]'",
        "S3cretPass",
    ),
    (
        "keytool -storepasswd -new S3cretPass -keystore ks.jks",
        "keytool -storepasswd -new [REDACTED] -keystore ks.jks",
        "S3cretPass",
    ),
    (
        "htpasswd -b /etc/nginx/.htpasswd alice S3cretPass",
        "htpasswd -b /etc/nginx/.htpasswd alice [REDACTED]",
        "S3cretPass",
    ),
    ("htpasswd -nb alice S3cretPass", "htpasswd -nb alice [REDACTED]", "S3cretPass"),
    ("htpasswd -cbB -C 12 users alice 'S3 cret'", "htpasswd -cbB -C 12 users alice '[REDACTED]'", "S3 cret"),
]

COMMAND_LINES_KEPT = [
    "ssh -p 2222 admin@host",
    "scp -P 2222 -p file host:",
    "docker run -p 8080:80 nginx",
    "mkdir -p /tmp/a/b",
    "cp -pr src dst",
    "mysql -p mydb",  # -p alone prompts for the password; mydb is the database
    "mysql -u root mydb | ssh -p 2222 host",
    "mysql -P 3306 -h db mydb",
    "mysql -p$MYSQL_PWD mydb",  # a reference, not the password
    "mysql -p'<password>' mydb",
    "Set it with the --password option.",
    "--password - reads it from stdin",
    "--token-count 5 --max-tokens 100",
    "pip install -p 3.11 pkg",
    "grep -p pattern file",
    "sshpass -e ssh host",
    "curl -u admin https://x",  # curl prompts for the password
    "htpasswd -c /etc/nginx/.htpasswd alice",  # prompts for the password
    "htpasswd -D users alice",
    "sqlcmd -S db -E -Q 'select 1'",
    "keytool -list -keystore ks.jks -storepass:env STOREPASS",  # names where the password is
    "keytool -list -v -keystore ks.jks",
    "az login --use-device-code",
    "az webapp up -p 8080 --name app",
    "psql -P pager=off -c 'select 1'",
]


@pytest.mark.parametrize(("text", "expected", "secret"), COMMAND_LINES_REDACTED)
def test_command_line_passwords_are_redacted_and_remembered(text: str, expected: str, secret: str) -> None:
    memory = SecretMemory()
    assert Redactor().scrub_text(text, memory) == expected
    assert secret in memory or len(secret) < SecretMemory.MIN_LENGTH
    # ... and the run's memory scrubs the password wherever it shows up later, in prose or a tool argument.
    if len(secret) >= SecretMemory.MIN_LENGTH:
        assert Redactor().scrub_text(f"it was {secret}, right?", memory) == "it was [REDACTED], right?"


@pytest.mark.parametrize("text", COMMAND_LINES_KEPT)
def test_ordinary_command_lines_are_kept(text: str) -> None:
    memory = SecretMemory()
    assert Redactor().scrub_text(text, memory) == text
    assert len(memory) == 0


def test_command_lines_inside_tool_arguments_and_results() -> None:
    memory = SecretMemory()
    arguments = {"command": "mysql -uroot -pS3cretPass -e 'select 1'", "cwd": "/srv"}
    assert Redactor().scrub_value(arguments, memory) == {
        "command": "mysql -uroot -p[REDACTED] -e 'select 1'",
        "cwd": "/srv",
    }
    log = "$ sshpass -p hunter2-x ssh db\nWarning: Permanently added 'db'\n$ mkdir -p /tmp/x"
    assert Redactor().scrub_result_text(log, memory) == (
        "$ sshpass -p [REDACTED] ssh db\nWarning: Permanently added 'db'\n$ mkdir -p /tmp/x"
    )


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["mysql", "-uroot", "-pS3cretPass", "db"], ["mysql", "-uroot", "-p[REDACTED]", "db"]),
        (["/usr/bin/mysqldump", "-pS3cretPass"], ["/usr/bin/mysqldump", "-p[REDACTED]"]),
        (["sshpass", "-p", "S3cret pass", "ssh", "h"], ["sshpass", "-p", "[REDACTED]", "ssh", "h"]),
        (["app", "--password", "S3cretPass", "-v"], ["app", "--password", "[REDACTED]", "-v"]),
        (["docker", "login", "-u", "me", "-p", "S3cretPass"], ["docker", "login", "-u", "me", "-p", "[REDACTED]"]),
        (["curl", "-u", "admin:S3cretPass", "https://x"], ["curl", "-u", "admin:[REDACTED]", "https://x"]),
        (["mysql", "-pA1b2c3d4", ";", "ls", "-p", "x"], ["mysql", "-p[REDACTED]", ";", "ls", "-p", "x"]),
        (["sqlcmd", "-S", "db", "-P", "S3cretPass"], ["sqlcmd", "-S", "db", "-P", "[REDACTED]"]),
        (["az", "login", "-u", "me", "-p", "S3cretPass"], ["az", "login", "-u", "me", "-p", "[REDACTED]"]),
        (["keytool", "-storepass", "S3cretPass", "-list"], ["keytool", "-storepass", "[REDACTED]", "-list"]),
        (["htpasswd", "-b", "f", "alice", "S3cretPass"], ["htpasswd", "-b", "f", "alice", "[REDACTED]"]),
        (["htpasswd", "-nbB", "alice", "S3cretPass"], ["htpasswd", "-nbB", "alice", "[REDACTED]"]),
        # Kept:
        (["/usr/bin/mysql", "-p", "mydb"], ["/usr/bin/mysql", "-p", "mydb"]),
        (["ssh", "-p", "2222", "host"], ["ssh", "-p", "2222", "host"]),
        (["docker", "run", "-p", "8080:80", "nginx"], ["docker", "run", "-p", "8080:80", "nginx"]),
        (["mysql", "-p$MYSQL_PWD"], ["mysql", "-p$MYSQL_PWD"]),
        (["echo", "--password", "option"], ["echo", "--password", "option"]),
        (["htpasswd", "-c", "f", "alice"], ["htpasswd", "-c", "f", "alice"]),
        (["keytool", "-storepass:env", "PW", "-list"], ["keytool", "-storepass:env", "PW", "-list"]),
    ],
)
def test_command_line_passwords_in_argument_lists(argv: list[str], expected: list[str]) -> None:
    assert Redactor().scrub_value({"command": argv}) == {"command": expected}
