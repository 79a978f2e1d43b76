"""Stripe's REST API subset: `/v1/...` resource routes dispatched by `sandbox.api.router`."""
