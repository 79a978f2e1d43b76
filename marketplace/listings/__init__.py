"""Listings: what a seller offers (title, price in minor units of one currency, stock), browsed by anyone."""
