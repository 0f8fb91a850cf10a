"""Recursive-descent parser for the ListRuns filter language (a documented subset of AIP-160; docs/queries.md).

    filter     := [ or_expr ] END
    or_expr    := and_expr { "OR" and_expr }
    and_expr   := unary { "AND" unary }
    unary      := "NOT" unary | primary
    primary    := "(" or_expr ")" | comparison
    comparison := FIELD OPERATOR VALUE

Precedence is the usual boolean one, NOT > AND > OR (AIP-160's text binds OR tighter; we do not). Adjacent terms
without AND/OR are an error, not an implicit AND. Every comparison is checked against the allow-list and its value
converted to the field's type here, so a tree returned by `parse_filter` is always valid.
"""

from __future__ import annotations

from runs_service.errors import InvalidFilter
from runs_service.query.filter_ast import And, Comparison, Expr, Not, Op, Or
from runs_service.query.filter_fields import check_operator, resolve_field
from runs_service.query.filter_lexer import Token, TokenKind, tokenize
from runs_service.query.filter_values import Literal, convert_value

__all__ = ["And", "Comparison", "Expr", "Not", "Op", "Or", "parse_filter"]

MAX_NESTING = 64


def parse_filter(text: str) -> Expr | None:
    """The checked tree of `text`; None for an empty or whitespace-only filter. Raises InvalidFilter."""
    tokens = tokenize(text)
    if tokens[0].kind is TokenKind.END:
        return None
    parser = _Parser(tokens)
    expr = parser.or_expr(depth=0)
    parser.expect_end()
    return expr


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self._tokens = tokens
        self._index = 0

    @property
    def _current(self) -> Token:
        return self._tokens[self._index]

    def _advance(self) -> Token:
        token = self._tokens[self._index]
        if token.kind is not TokenKind.END:
            self._index += 1
        return token

    def or_expr(self, depth: int, after: Token | None = None) -> Expr:
        operands = [self._and_expr(depth, after)]
        while self._current.kind is TokenKind.OR:
            keyword = self._advance()
            operands.append(self._and_expr(depth, after=keyword))
        return operands[0] if len(operands) == 1 else Or(tuple(operands))

    def _and_expr(self, depth: int, after: Token | None = None) -> Expr:
        operands = [self._unary(depth, after)]
        while self._current.kind is TokenKind.AND:
            keyword = self._advance()
            operands.append(self._unary(depth, after=keyword))
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def _unary(self, depth: int, after: Token | None) -> Expr:
        if self._current.kind is TokenKind.NOT:
            keyword = self._advance()
            self._check_depth(depth + 1, keyword)
            return Not(self._unary(depth + 1, after=keyword))
        return self._primary(depth, after)

    def _primary(self, depth: int, after: Token | None) -> Expr:
        token = self._current
        if token.kind is TokenKind.LPAREN:
            self._advance()
            self._check_depth(depth + 1, token)
            expr = self.or_expr(depth + 1, after=token)
            if self._current.kind is not TokenKind.RPAREN:
                self._raise_unclosed(token)
            self._advance()
            return expr
        if token.kind is TokenKind.WORD:
            return self._comparison()
        raise InvalidFilter(self._expected_expression(token, after), token.position)

    def _comparison(self) -> Comparison:
        name = self._advance()
        spec = resolve_field(name.text, name.position)
        operator = self._current
        if operator.kind is not TokenKind.OP:
            raise InvalidFilter(
                f"expected an operator (= != < <= > >=) after {name.text}, got {operator.describe()}",
                operator.position,
            )
        self._advance()
        op = Op(operator.text)
        check_operator(spec, op, operator.position)
        value = self._current
        if value.kind not in (TokenKind.STRING, TokenKind.WORD):
            hint = " (equality is a single =)" if value.text == "=" else ""
            raise InvalidFilter(
                f"expected a value after {name.text} {op.value}, got {value.describe()}{hint}", value.position
            )
        self._advance()
        literal = Literal(value.value, value.position, value.wildcard)
        return Comparison(spec.name, op, convert_value(spec, op, literal), name.position)

    def expect_end(self) -> None:
        token = self._current
        if token.kind is TokenKind.END:
            return
        if token.kind is TokenKind.RPAREN:
            raise InvalidFilter("unexpected ')': there is no '(' for it to close", token.position)
        raise InvalidFilter(self._expected_connective(token, "end of input"), token.position)

    def _raise_unclosed(self, opening: Token) -> None:
        token = self._current
        if token.kind is TokenKind.END:
            raise InvalidFilter(f"missing ')' to close the '(' at position {opening.position}", token.position)
        raise InvalidFilter(self._expected_connective(token, "')'"), token.position)

    @staticmethod
    def _expected_connective(token: Token, or_else: str) -> str:
        if token.text in ("and", "or", "not", "And", "Or", "Not"):
            return f"expected AND, OR or {or_else}, got {token.describe()}: keywords are uppercase"
        return (
            f"expected AND, OR or {or_else}, got {token.describe()} "
            "(terms must be joined with AND or OR; implicit AND is not supported)"
        )

    @staticmethod
    def _expected_expression(token: Token, after: Token | None) -> str:
        got = token.describe()
        if after is not None and after.kind is TokenKind.NOT and token.kind not in (TokenKind.STRING, TokenKind.OP):
            return f"NOT must be followed by an expression, got {got}"
        if after is not None and after.kind is TokenKind.LPAREN and token.kind is TokenKind.RPAREN:
            return "expected an expression inside the parentheses, got ')': empty parentheses are not allowed"
        if token.kind is TokenKind.RPAREN and after is None:
            return "unexpected ')': there is no '(' for it to close"
        if token.kind is TokenKind.STRING:
            return f"expected a field name, got the string {got}; field names are not quoted"
        if token.kind is TokenKind.OP:
            return f"expected a field name before {got}"
        where = ""
        if after is not None:
            where = " after '('" if after.kind is TokenKind.LPAREN else f" after {after.text}"
        return f'expected a comparison such as agent_name = "x"{where}, got {got}'

    @staticmethod
    def _check_depth(depth: int, token: Token) -> None:
        if depth > MAX_NESTING:
            raise InvalidFilter(
                f"filter is nested too deeply: more than {MAX_NESTING} levels of parentheses and NOT",
                token.position,
            )
