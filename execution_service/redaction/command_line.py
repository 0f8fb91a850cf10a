"""Passwords on command lines, as tools print them, logs echo them and models write them in text.

The forms and the rule for each (what is NOT redacted matters as much: ordinary text must survive):
- `--password=SECRET`, `PGPASSWORD=SECRET psql`, `MYSQL_PWD=...`, `SSHPASS=...`: key=value pairs whose key is a
  secret key; the redactor's pair rule (redactor.py) covers them, for any tool.
- `--password SECRET` (a long flag and a separate value): for any tool whose flag name is a secret key (`--password`,
  `--passwd`, `--token`, `--api-key`, `--db-password`...; not `--token-count`), unless the value starts with `-`
  (the next flag, or `-` for stdin) or is a plain lower-case word (`--password option`, `--password prompt`: prose
  about the flag, and a password that simple is not recognised).
- `-pSECRET`, `-p'SEC RET'`, `-p"SECRET"` (a short flag with the value attached): only in the commands whose short
  flag means a password (rules.DEFAULT_PASSWORD_FLAGS: the mysql/mariadb tools, sshpass, redis-cli `-a`, `docker
  login`...), on the same command line (up to a newline or a `; `, `| `, `&& `). `-p SECRET` (spaced) only where
  the tool reads it that way (sshpass, redis-cli, docker login): `mysql -p mydb` prompts for the password and `mydb`
  is the database, `ssh -p 2222`, `docker run -p 8080:80`, `mkdir -p dir`, `cp -pr` stay as they are.
- `sqlcmd -P SECRET` (also bcp, osql), `az login -p SECRET`, keytool's `-storepass SECRET`, `-keypass`,
  `-srcstorepass`, `-deststorepass`, `-srckeypass`, `-destkeypass`, `-new` (rules.DEFAULT_PASSWORD_FLAGS).
- `curl -u user:SECRET` / `--user user:SECRET`: the part after the first colon.
- `htpasswd -b FILE USER SECRET` / `htpasswd -nb USER SECRET` (flags may be grouped: `-cb`, `-bB`): the positional
  argument that is the password, only when a flag group holds `b` (without it htpasswd prompts).
- The same as argument lists (`["mysql", "-uroot", "-pSECRET"]`, `["sshpass", "-p", "SECRET", "ssh", "h"]`,
  `["app", "--password", "SECRET"]`), as tools take commands in JSON: an item is a command word when it is one (or
  its path ends with one: `/usr/bin/mysql`); its flags are the items up to a `;`, `|` or `&&` item.
Quotes around a value are kept; the value inside becomes [REDACTED] and is remembered by the run's SecretMemory.
Values that stand for a password are left alone: `$MYSQL_PWD`, `${PW}`, `<password>`, `***`, `PASSWORD`, `xxx`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from execution_service.redaction.rules import REDACTED, PasswordFlag
from execution_service.redaction.secret_memory import SecretMemory

_VALUE = r"(?P<value>'[^'\n]*'|\"[^\"\n]*\"|[^\s'\"]+)"
# Where a command line ends: a newline, or a shell separator followed by whitespace (`; `, `| `, `&& `).
_COMMAND_END = re.compile(r"\n|[;|&]\s")
_LONG_FLAG_RE = re.compile(r"(?<![\w-])--(?P<flag>[A-Za-z][\w.-]{0,63})[ \t]+(?=[^-\s])" + _VALUE)
_CURL = r"curl"
_CURL_USER_RE = re.compile(r"(?<=\s)(?:-u[ \t]*|--user[ \t]+|--user=)['\"]?[^\s:'\"]*:(?P<value>[^\s'\"]+)")
_PROSE_WORD = re.compile(r"[a-z]+[.,;:!?)]*")
# Values that stand for a password rather than being one: `$MYSQL_PWD`, `${PW}`, `<password>`, `***`, `PASSWORD`.
_PLACEHOLDER = re.compile(
    r"\$\{?\w+\}?|<[^<>]*>|\[[^\]]*\]|\*+|(?i:x+|pass|passwd|password|pwd|secret|your_?password|changeme)"
)


_HTPASSWD = r"htpasswd"
_HTPASSWD_FLAGS = re.compile(r"-[cnbimB25CrdspvD]+")
_HTPASSWD_VALUED_FLAGS = frozenset({"-C", "-r"})  # bcrypt cost, SHA rounds: the next word is their value
_WORD_RE = re.compile(_VALUE)

# What rewrites one command line's text (the part after the command word), given the run's memory.
_LineRule = Callable[[str, "SecretMemory | None"], str]


def _flag_regex(flag: PasswordFlag) -> re.Pattern[str]:
    forms = []
    for name in flag.names:
        if flag.attached:
            forms.append(re.escape(name) + r"(?=[^\s-])")
        if flag.spaced:
            forms.append(re.escape(name) + r"[ \t]+(?=[^\s-])")
    return re.compile(r"(?<=\s)-(?:" + "|".join(forms) + ")" + _VALUE)


def _regex_rule(pattern: re.Pattern[str]) -> _LineRule:
    return lambda line, memory: pattern.sub(lambda m: _redact_value(m, memory), line)


def _htpasswd_password_index(words: list[str]) -> int | None:
    """The index in `words` (htpasswd's arguments) of the password, or None when htpasswd will prompt for it."""
    flags = ""
    positional: list[int] = []
    skip = False
    for index, word in enumerate(words):
        if skip:
            skip = False
        elif _HTPASSWD_FLAGS.fullmatch(word):
            flags += word[1:]
            skip = word in _HTPASSWD_VALUED_FLAGS
        else:
            positional.append(index)
    wanted = 1 if "n" in flags else 2  # -n prints instead of writing a file: USER PASSWORD, else FILE USER PASSWORD
    return positional[wanted] if "b" in flags and len(positional) > wanted else None


def _htpasswd_line(line: str, memory: SecretMemory | None) -> str:
    words = list(_WORD_RE.finditer(line))
    found = _htpasswd_password_index([word.group(0) for word in words])
    if found is None:
        return line
    word = words[found]
    return line[: word.start()] + _redacted(word.group(0), memory) + line[word.end() :]


class CommandLineScrubber:
    """Finds and redacts command-line passwords in text (see the module docstring)."""

    def __init__(self, flags: tuple[PasswordFlag, ...], is_secret_key: Callable[[str], bool]) -> None:
        # One scan finds every command word; the group that matched says which rule applies to its line.
        self._rules: tuple[PasswordFlag | str, ...] = (*flags, _CURL, _HTPASSWD)
        self._line_rules: tuple[_LineRule, ...] = (
            *(_regex_rule(_flag_regex(flag)) for flag in flags),
            _regex_rule(_CURL_USER_RE),
            _htpasswd_line,
        )
        commands = [flag.commands for flag in flags] + [_CURL, _HTPASSWD]
        self._commands = re.compile(
            r"(?<![\w-])(?:" + "|".join(f"(?P<c{i}>{c})" for i, c in enumerate(commands)) + r")\b"
        )
        self._is_secret_key = is_secret_key

    def scrub(self, text: str, memory: SecretMemory | None) -> str:
        if "-" not in text:
            return text
        if "--" in text:
            text = _LONG_FLAG_RE.sub(lambda m: self._long_flag(m, memory), text)
        pos = 0
        while (found := self._commands.search(text, pos)) is not None:
            rule = self._line_rules[int((found.lastgroup or "c0")[1:])]
            start = found.end()
            ended = _COMMAND_END.search(text, start)
            end = ended.start() if ended is not None else len(text)
            line = rule(text[start:end], memory)
            text = text[:start] + line + text[end:]
            pos = start  # the rest of the line may name another command (`sshpass -p X mysql -pY`)
        return text

    def scrub_argv(self, items: list[Any], memory: SecretMemory | None) -> list[Any] | None:
        """The argument list with its password values redacted, or None when it holds none (or is no argv)."""
        if len(items) < 2 or not all(isinstance(item, str) for item in items) or not any("-" in i for i in items):
            return None
        out = list(items)
        for index, item in enumerate(items[:-1]):
            if item.startswith("--") and self._is_long_secret(item[2:], items[index + 1]):
                out[index + 1] = _redacted(items[index + 1], memory)
        for index in range(len(items)):
            found = self._command_at(items, index)
            if found is not None:
                flag, first = found
                _redact_argv_flags(out, first, flag, memory)
        return out if out != items else None

    def _command_at(self, items: list[str], index: int) -> tuple[PasswordFlag | str, int] | None:
        """(the command's flag rule, or the name of a command with a rule of its own: curl, htpasswd; the index of
        its first argument) when a command starts at
        `index` (its word may be a path: /usr/bin/mysql; it may span items: docker login)."""
        head = items[index].rsplit("/", 1)[-1]
        for span in (1, 2, 3):
            words = " ".join([head, *items[index + 1 : index + span]])
            found = self._commands.fullmatch(words)
            if found is not None:
                return self._rules[int((found.lastgroup or "c0")[1:])], index + span
        return None

    def _is_long_secret(self, flag: str, value: str) -> bool:
        if "=" in flag or not value or value.startswith("-") or _PROSE_WORD.fullmatch(value):
            return False
        return self._is_secret_key(flag)

    def _long_flag(self, match: re.Match[str], memory: SecretMemory | None) -> str:
        if not self._is_secret_key(match.group("flag")) or _PROSE_WORD.fullmatch(match.group("value")):
            return match.group(0)
        return _redact_value(match, memory)


_ARGV_SEPARATORS = frozenset({";", "|", "||", "&&", "&"})


def _redact_argv_flags(out: list[str], first: int, flag: PasswordFlag | str, memory: SecretMemory | None) -> None:
    """Redacts, in place, the password values among the arguments from `first` up to a separator item: `-pX`
    (attached), `-p X` (spaced), for curl the password of `-u user:X` / `--user user:X`, for htpasswd the password
    argument of `-b`."""
    end = first
    while end < len(out) and out[end] not in _ARGV_SEPARATORS:
        end += 1
    if flag == _HTPASSWD:
        found = _htpasswd_password_index(out[first:end])
        if found is not None:
            out[first + found] = _redacted(out[first + found], memory)
        return
    index = first
    while index < end:
        item = out[index]
        if isinstance(flag, str):  # curl
            value_at = index + 1 if item in ("-u", "--user") else index
            value = out[value_at] if value_at < len(out) else ""
            if value_at == index:
                value = item[2:] if item.startswith("-u") else item[7:] if item.startswith("--user=") else ""
            user, colon, password = value.partition(":")
            if colon and password:
                redacted = user + colon + _redacted(password, memory)
                out[value_at] = redacted if value_at != index else item[: len(item) - len(value)] + redacted
        elif flag.spaced and item[1:] in flag.names and item.startswith("-") and index + 1 < end:
            out[index + 1] = _redacted(out[index + 1], memory)
            index += 1
        elif flag.attached and (name := _attached_name(item, flag.names)) is not None:
            out[index] = item[: len(name) + 1] + _redacted(item[len(name) + 1 :], memory)
        index += 1


def _attached_name(item: str, names: tuple[str, ...]) -> str | None:
    """The flag name of `names` that `item` starts with, its value attached (`-pSECRET`), or None."""
    for name in names:
        if item.startswith(f"-{name}") and len(item) > len(name) + 1:
            return name
    return None


def _redact_value(match: re.Match[str], memory: SecretMemory | None) -> str:
    """The match with its `value` group redacted."""
    head = match.group(0)[: match.start("value") - match.start()]
    tail = match.group(0)[match.end("value") - match.start() :]
    return head + _redacted(match.group("value"), memory) + tail


def _redacted(value: str, memory: SecretMemory | None) -> str:
    quote = value[0] if len(value) > 1 and value[0] in "'\"" and value[-1] == value[0] else ""
    inner = value[1:-1] if quote else value
    if not inner or inner == REDACTED or _PLACEHOLDER.fullmatch(inner):
        return value
    if memory is not None:
        memory.add(inner)
    return f"{quote}{REDACTED}{quote}"
