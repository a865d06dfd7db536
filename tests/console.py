"""A console list as a person pages through it."""

from __future__ import annotations


def page_to_end(client, url: str, *, rows: str) -> list[int]:
    """The pks of the list at ``url`` page after page, following each page's next link to the end (every page
    answers 200); ``rows`` names the list's rows in the page's context."""
    seen: list[int] = []
    while url:
        response = client.get(url)
        assert response.status_code == 200, url
        seen += [row.pk for row in response.context[rows]]
        url = response.context["next_url"]
    return seen
