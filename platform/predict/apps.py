from django.apps import AppConfig


class PredictConfig(AppConfig):
    name = "predict"
    verbose_name = "Predicted traits"
