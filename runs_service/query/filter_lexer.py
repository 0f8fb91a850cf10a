"""Splits a ListRuns filter into tokens, each with its 0-based character position.

Tokens: `(` `)`, the operators `= != < <= > >=`, the keywords AND / OR / NOT (uppercase only), quoted strings
("..." or '...', with the escapes \\" \\' \\\\ and \\*) and bare words made of ASCII letters, digits and `_ . - * /`.
Anything else is an InvalidFilter naming the character and its position.
"""

from __future__ import annotations

import enum
import unicodedata
from dataclasses import dataclass

from agentrun_core.echo import cut
from runs_service.errors import InvalidFilter

MAX_FILTER_LENGTH = 4096

_WORD_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-*/")
_ESCAPABLE = frozenset("\"'\\*")
_KEYWORDS = ("AND", "OR", "NOT")


class TokenKind(enum.Enum):
    LPAREN = "("
    RPAREN = ")"
    OP = "operator"
    AND = "AND"
    OR = "OR"
    NOT = "NOT"
    STRING = "string"
    WORD = "word"
    END = "end of input"


@dataclass(frozen=True, slots=True)
class Token:
    kind: TokenKind
    # The source text of the token ("" for END); for STRING `value` holds the unescaped content.
    text: str
    position: int
    value: str = ""
    # STRING: the content ends with an unescaped `*` (a prefix match). WORD: the word ends with `*`.
    wildcard: bool = False

    def describe(self) -> str:
        """The token as an error message shows it."""
        if self.kind is TokenKind.END:
            return "end of input"
        text = cut(self.text, 40)
        return f"'{text}'" if self.kind is not TokenKind.STRING else text


def tokenize(text: str) -> list[Token]:
    """The tokens of `text`, ending with one END token."""
    if len(text) > MAX_FILTER_LENGTH:
        raise InvalidFilter(
            f"filter is {len(text)} characters long; the limit is {MAX_FILTER_LENGTH}", MAX_FILTER_LENGTH
        )
    tokens: list[Token] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char.isspace():
            i += 1
        elif char in "()":
            tokens.append(Token(TokenKind.LPAREN if char == "(" else TokenKind.RPAREN, char, i))
            i += 1
        elif char in "=<>!":
            i = _operator(text, i, tokens)
        elif char in "\"'":
            i = _string(text, i, tokens)
        elif char in _WORD_CHARS:
            start = i
            while i < len(text) and text[i] in _WORD_CHARS:
                i += 1
            word = text[start:i]
            kind = TokenKind[word] if word in _KEYWORDS else TokenKind.WORD
            tokens.append(Token(kind, word, start, value=word, wildcard=word.endswith("*")))
        else:
            raise InvalidFilter(_unexpected_character(char), i)
    tokens.append(Token(TokenKind.END, "", len(text)))
    return tokens


def _operator(text: str, i: int, tokens: list[Token]) -> int:
    two = text[i : i + 2]
    if two in ("!=", "<=", ">="):
        tokens.append(Token(TokenKind.OP, two, i))
        return i + 2
    if text[i] == "!":
        raise InvalidFilter("unexpected '!': the not-equal operator is '!=' and negation is NOT", i)
    tokens.append(Token(TokenKind.OP, text[i], i))
    return i + 1


def _string(text: str, start: int, tokens: list[Token]) -> int:
    quote = text[start]
    chars: list[str] = []
    wildcard = False
    i = start + 1
    while i < len(text):
        char = text[i]
        if char == quote:
            tokens.append(Token(TokenKind.STRING, text[start : i + 1], start, "".join(chars), wildcard))
            return i + 1
        wildcard = False
        if char == "\\":
            escaped = text[i + 1] if i + 1 < len(text) else ""
            if escaped not in _ESCAPABLE:
                shown = f"\\{escaped}" if escaped else "\\ at the end of the filter"
                raise InvalidFilter(f"unknown escape {shown} in a string; the escapes are \\\" \\' \\\\ and \\*", i)
            chars.append(escaped)
            i += 2
            continue
        if _forbidden_in_string(char):
            raise InvalidFilter(f"character U+{ord(char):04X} is not allowed in a string", i)
        chars.append(char)
        wildcard = char == "*"
        i += 1
    raise InvalidFilter(f"unterminated string: the {quote} opened here is never closed", start)


def _forbidden_in_string(char: str) -> bool:
    """Control characters (NUL cannot be stored by PostgreSQL) and lone surrogates (not valid UTF-8)."""
    return unicodedata.category(char) in ("Cc", "Cs") and char != "\t"


def _unexpected_character(char: str) -> str:
    shown = repr(char) if char.isprintable() else f"U+{ord(char):04X}"
    hint = ""
    if char == ":":
        hint = " (the ':' has-operator is not supported; write timestamps in quotes)"
    elif char == "`":
        hint = " (quote strings with \" or ')"
    return f"unexpected character {shown}{hint}"
