from django import forms
from django.contrib import admin, messages

from config.security.models import IntegrationToken
from config.security.tokens import RESOURCES, TokenInputError, integration_token_create, integration_token_revoke

SCOPE_CHOICES = [(f"{r}:{a}", f"{r}: {a}") for r in RESOURCES for a in ("read", "write")]


class IntegrationTokenForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(choices=SCOPE_CHOICES, widget=forms.CheckboxSelectMultiple)
    days = forms.IntegerField(min_value=1, max_value=365, initial=90, help_text="Days until the token expires")

    class Meta:
        model = IntegrationToken
        fields = ["name", "user", "scopes"]


@admin.register(IntegrationToken)
class IntegrationTokenAdmin(admin.ModelAdmin):
    list_display = ("name", "user", "key_prefix", "scopes", "expires_at", "last_used_at", "revoked_at")
    readonly_fields = ("key_prefix", "created_at", "created_by", "last_used_at", "expires_at", "revoked_at")
    actions = ["revoke"]

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = IntegrationTokenForm
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["name", "user", "scopes", "days"]
        return ["name", "user", "scopes", *self.readonly_fields]

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else ("name", "user", "scopes", *self.readonly_fields)

    def save_model(self, request, obj, form, change):
        if change:
            return
        try:
            token, key = integration_token_create(
                user_id=form.cleaned_data["user"].pk,
                name=form.cleaned_data["name"],
                scopes=form.cleaned_data["scopes"],
                days=form.cleaned_data["days"],
                actor=request.user.get_username(),
            )
        except TokenInputError as exc:
            messages.error(request, str(exc))
            return
        obj.pk = token.pk
        messages.warning(request, f"Token key (shown once, copy it now): {key}")

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request, queryset):
        for token in queryset:
            integration_token_revoke(token_id=token.pk, actor=request.user.get_username())
        messages.success(request, "Revoked.")
