from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from merchants.selectors import merchants_for_user


@login_required
def dashboard(request):
    return render(request, "portal/dashboard.html", {"merchants": merchants_for_user(user=request.user)})
