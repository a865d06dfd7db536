"""``{% case_fix_link case %}``: the case's one-click fix (orders.rows.case_fix), where a page shows a few cases."""

from __future__ import annotations

from django import template
from django.utils.html import format_html

from orders.rows import case_fix

register = template.Library()


@register.simple_tag(takes_context=True)
def case_fix_link(context, case) -> str:
    request = context.get("request")
    can_map_sku = request is not None and request.user.has_perm("channels.change_listing")
    fix = case_fix(case, can_map_sku=can_map_sku)
    return format_html('<a class="fix" href="{}">{}</a>', fix.url, fix.label) if fix else ""
