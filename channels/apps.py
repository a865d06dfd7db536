from django.apps import AppConfig


class ChannelsConfig(AppConfig):
    # Shadows the Django Channels package name; Waybill does not use that package.
    name = "channels"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        # receivers connects the fulfilment, orders and inventory signal receivers; tasks connects the
        # receivers that enqueue what channels' own services announce (channels.signals).
        from channels import receivers, tasks  # noqa: F401
        from channels.accounts import accounts_forget, provider
        from channels.models import ChannelAccount
        from channels.signals import channel_accounts_updated
        from config.kernel import accounts

        # Orders and the other apps read an order's account through the kernel's port (config.kernel.accounts);
        # the provider's cache is emptied by every write of an account in this process.
        accounts.register(provider)
        post_save.connect(accounts_forget, sender=ChannelAccount, dispatch_uid="channels.accounts_forget.save")
        post_delete.connect(accounts_forget, sender=ChannelAccount, dispatch_uid="channels.accounts_forget.delete")
        channel_accounts_updated.connect(accounts_forget, dispatch_uid="channels.accounts_forget.update")
