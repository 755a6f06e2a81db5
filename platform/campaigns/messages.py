"""Message templates: placeholders, validation at save time, and fast rendering per consumer.

A template is text with placeholders in braces, e.g. "Hi! {product_1_title} is back at {store_name}".
Literal braces are written doubled: "{{" and "}}". Errors name the placeholder and its position
(1-based character position, with line and column), so a merchant can find and fix it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

PRODUCT_PLACEHOLDER = re.compile(r"^product_(\d+)_(title|price)$")
CONSTANT_PLACEHOLDERS = {
    "store_name": "your store's name",
    "offer": "the offer, e.g. '15% off with code SPRING15'",
    "coupon_code": "the coupon code",
    "discount": "the discount, e.g. '15%'",
}
PRODUCT_LIST_PLACEHOLDER = "products"
KNOWN_PLACEHOLDERS_HELP = (
    "{store_name}, {offer}, {coupon_code}, {discount}, {products}, "
    "{product_N_title} and {product_N_price} (N from 1 to the number of personalised products)"
)


class TemplateSyntaxProblem(ValueError):
    def __init__(self, message: str, position: int):
        self.position = position
        super().__init__(message)


@dataclass(frozen=True)
class Placeholder:
    name: str
    position: int  # 1-based character position of the opening brace


@dataclass(frozen=True)
class ProductInfo:
    title: str
    price: Decimal | None


def _where(text: str, position: int) -> str:
    """'position 12 (line 2, column 3)' for a 1-based character position."""
    before = text[: position - 1]
    line = before.count("\n") + 1
    column = position - (before.rfind("\n") + 1)
    return f"position {position} (line {line}, column {column})"


def template_parse(text: str) -> list[str | Placeholder]:
    """Split a template into literal text and placeholders; raise TemplateSyntaxProblem on bad braces."""
    parts: list[str | Placeholder] = []
    literal: list[str] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char == "{":
            if i + 1 < n and text[i + 1] == "{":
                literal.append("{")
                i += 2
                continue
            close = text.find("}", i + 1)
            nested = text.find("{", i + 1)
            if close == -1 or (nested != -1 and nested < close):
                raise TemplateSyntaxProblem(
                    f"Unclosed '{{' at {_where(text, i + 1)}: close the placeholder with '}}' "
                    "or write '{{' for a literal brace.",
                    i + 1,
                )
            name = text[i + 1 : close]
            if not name.strip():
                raise TemplateSyntaxProblem(f"Empty placeholder '{{}}' at {_where(text, i + 1)}.", i + 1)
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append(Placeholder(name=name, position=i + 1))
            i = close + 1
        elif char == "}":
            if i + 1 < n and text[i + 1] == "}":
                literal.append("}")
                i += 2
                continue
            raise TemplateSyntaxProblem(
                f"Unmatched '}}' at {_where(text, i + 1)}: write '}}}}' for a literal brace.", i + 1
            )
        else:
            literal.append(char)
            i += 1
    if literal:
        parts.append("".join(literal))
    return parts


def template_problems(
    text: str, *, personalised_products: int, coupon_code: str, discount_percent: Decimal | None
) -> list[str]:
    """Every problem with one template, each naming the placeholder and where it is; empty when valid."""
    try:
        parts = template_parse(text)
    except TemplateSyntaxProblem as exc:
        return [str(exc)]
    problems = []
    for part in parts:
        if not isinstance(part, Placeholder):
            continue
        name, where = part.name, _where(text, part.position)
        product = PRODUCT_PLACEHOLDER.match(name)
        if product:
            index = int(product.group(1))
            if index < 1:
                problems.append(f"Placeholder {{{name}}} at {where}: products are numbered from 1.")
            elif index > personalised_products:
                problems.append(
                    f"Placeholder {{{name}}} at {where} refers to product {index}, but the campaign personalises "
                    f"{personalised_products} product{'s' if personalised_products != 1 else ''}."
                )
        elif name == PRODUCT_LIST_PLACEHOLDER:
            if personalised_products == 0:
                problems.append(
                    f"Placeholder {{{name}}} at {where} needs personalised products, but the campaign has none."
                )
        elif name in CONSTANT_PLACEHOLDERS:
            if name == "offer" and not coupon_code and discount_percent is None:
                problems.append(f"Placeholder {{{name}}} at {where} needs an offer: set a coupon code or a discount.")
            elif name == "coupon_code" and not coupon_code:
                problems.append(f"Placeholder {{{name}}} at {where} needs a coupon code.")
            elif name == "discount" and discount_percent is None:
                problems.append(f"Placeholder {{{name}}} at {where} needs a discount.")
        else:
            problems.append(
                f"Unknown placeholder {{{name}}} at {where}. Known placeholders: {KNOWN_PLACEHOLDERS_HELP}."
            )
    return problems


def format_discount(discount_percent: Decimal | None) -> str:
    if discount_percent is None:
        return ""
    return f"{discount_percent.normalize():f}%"


def format_offer(*, coupon_code: str, discount_percent: Decimal | None) -> str:
    discount = format_discount(discount_percent)
    if discount and coupon_code:
        return f"{discount} off with code {coupon_code}"
    if discount:
        return f"{discount} off"
    if coupon_code:
        return f"code {coupon_code}"
    return ""


def format_price(price: Decimal | None) -> str:
    return "" if price is None else f"{price:.2f}"


class CompiledTemplate:
    """A validated template with the campaign's constants filled in, ready to render per consumer.

    Rendering is one `str.format_map` per consumer: fast enough for a million messages.
    """

    def __init__(self, text: str, *, constants: dict[str, str]):
        pieces: list[str] = []
        self.product_fields: list[tuple[str, int, str]] = []  # (format field, product index, attribute)
        self.uses_product_list = False
        for part in template_parse(text):
            if isinstance(part, str):
                pieces.append(part.replace("{", "{{").replace("}", "}}"))
                continue
            product = PRODUCT_PLACEHOLDER.match(part.name)
            if product:
                index, attribute = int(product.group(1)), product.group(2)
                field = f"p{index}_{attribute}"
                self.product_fields.append((field, index, attribute))
                pieces.append("{" + field + "}")
            elif part.name == PRODUCT_LIST_PLACEHOLDER:
                self.uses_product_list = True
                pieces.append("{products}")
            else:
                # Constants are substituted once, here, and escaped so their own braces stay literal.
                pieces.append(constants.get(part.name, "").replace("{", "{{").replace("}", "}}"))
        self.format_string = "".join(pieces)
        self.is_constant = not self.product_fields and not self.uses_product_list
        self.max_product_index = max((index for _, index, _ in self.product_fields), default=0)
        self._constant_text = self.format_string.format_map({}) if self.is_constant else ""

    @property
    def uses_products(self) -> bool:
        return not self.is_constant

    def render(self, products: Sequence[ProductInfo]) -> str:
        if self.is_constant:
            return self._constant_text
        values: dict[str, str] = {}
        for field, index, attribute in self.product_fields:
            if index <= len(products):
                product = products[index - 1]
                values[field] = product.title if attribute == "title" else format_price(product.price)
            else:
                # Fewer recommendations than the template asks for (a new consumer, a small catalogue).
                values[field] = ""
        if self.uses_product_list:
            values["products"] = ", ".join(p.title for p in products if p.title)
        return self.format_string.format_map(values)


def campaign_constants(*, store_name: str, coupon_code: str, discount_percent: Decimal | None) -> dict[str, str]:
    return {
        "store_name": store_name,
        "offer": format_offer(coupon_code=coupon_code, discount_percent=discount_percent),
        "coupon_code": coupon_code,
        "discount": format_discount(discount_percent),
    }


@dataclass(frozen=True)
class RenderedMessage:
    title: str
    body: str


def message_render(
    *, title_template: str, body_template: str, constants: dict[str, str], products: Sequence[ProductInfo]
) -> RenderedMessage:
    """One consumer's message: the templates with the campaign's constants and that consumer's products.

    The one-off form of what an activation does per batch with CompiledTemplate (previews, test sends, and other
    senders such as journeys use it)."""
    return RenderedMessage(
        title=CompiledTemplate(title_template, constants=constants).render(products),
        body=CompiledTemplate(body_template, constants=constants).render(products),
    )
