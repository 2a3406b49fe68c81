"""Notifications: the outbox dispatcher and one module per channel type (DESIGN "Notifications").

Kept free of imports here: the store imports `detector.notify.payload` inside its commit.
"""
