from functools import partial

from django.apps import AppConfig
from django.db.models.signals import post_migrate

# Privacy officers read the model cards (their fairness tables above all) in the admin.
OFFICER_PERMISSIONS = ("view_modelcard",)


def officer_permissions_sync(**_signal_kwargs) -> None:
    from privacy.roles import officer_permissions_grant

    officer_permissions_grant(app_label="predict", codenames=OFFICER_PERMISSIONS)


class PredictConfig(AppConfig):
    name = "predict"
    verbose_name = "Predicted traits"

    def ready(self) -> None:
        post_migrate.connect(officer_permissions_sync, sender=self, dispatch_uid="predict-officer-permissions")
        # The predicted families join the tag catalogue (tag explorer, GET tags/), each with its model card's
        # plain-words summary for merchants.
        from tags.rules import ExternalFamily, family_register

        from .families import PREDICTIONS
        from .selectors import family_note

        for prediction in PREDICTIONS.values():
            family_register(
                ExternalFamily(
                    family=prediction.family,
                    label=prediction.label,
                    description=prediction.description,
                    rule_version="1",
                    note=partial(family_note, prediction.family),
                    merchant_scoped=prediction.unit == "merchant",
                )
            )
