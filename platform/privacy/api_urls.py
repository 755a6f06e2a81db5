"""Privacy endpoints (data-subject requests) are wired here by the subject-rights work."""

urlpatterns: list = []
