"""Sessions end with the user's intent: logging out ends every session of that user, not only this one
(ASVS 3.3.1, 3.3.3). A password change already ends the other sessions: Django checks each session's
password hash on every request, and the changing session keeps itself with update_session_auth_hash."""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.contrib.auth import logout, signals
from django.contrib.sessions.models import Session
from django.dispatch import receiver
from django.utils import timezone

log = logging.getLogger("waybill.security")


def sessions_end_for_user(*, user_id: int, keep: str | None = None) -> int:
    """Delete every live database session of ``user_id`` (but ``keep``). Returns how many were ended.

    Only unexpired sessions are read: with the idle expiry that is a short list."""
    ended = []
    for session in Session.objects.filter(expire_date__gt=timezone.now()).iterator(chunk_size=500):
        if session.session_key == keep:
            continue
        data = session.get_decoded()  # {} when the session cannot be read
        if str(data.get("_auth_user_id")) == str(user_id):
            ended.append(session.session_key)
    if ended:
        Session.objects.filter(session_key__in=ended).delete()
    return len(ended)


@receiver(signals.user_logged_out, dispatch_uid="security.end_sessions_on_logout")
def _end_sessions_on_logout(sender, request, user, **kwargs) -> None:
    if user is None or not getattr(user, "pk", None):
        return
    count = sessions_end_for_user(user_id=user.pk)
    if count:
        log.info("logout of user %s ended %d other session(s)", user.pk, count)


LAST_SEEN = "_waybill_last_seen"
# The activity stamp is rewritten at most this often: a request does not cost a session write.
TOUCH_EVERY_SECONDS = 60


@receiver(signals.user_logged_in, dispatch_uid="security.stamp_session_on_login")
def _stamp_on_login(sender, request, user, **kwargs) -> None:
    if request is not None and hasattr(request, "session"):
        request.session[LAST_SEEN] = int(time.time())


class IdleSessionMiddleware:
    """A signed-in session unused for WAYBILL_SESSION_IDLE_MINUTES ends (ASVS 3.3.2): the next request is
    anonymous again (the console sends it to the login page, the API answers 401/403)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and hasattr(request, "session"):
            now = int(time.time())
            seen = request.session.get(LAST_SEEN)
            idle = settings.WAYBILL_SESSION_IDLE_MINUTES * 60
            if seen is not None and now - int(seen) > idle:
                log.info("session of user %s ended after %d idle minutes", user.pk, (now - int(seen)) // 60)
                logout(request)
            elif seen is None or now - int(seen) >= TOUCH_EVERY_SECONDS:
                request.session[LAST_SEEN] = now
        return self.get_response(request)
