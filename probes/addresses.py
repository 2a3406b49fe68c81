"""Test recipients: real-looking public addresses per market, so carrier-side validation
passes as it does for a shop's parcel."""

from __future__ import annotations

_ADDRESSES: dict[str, tuple[str, str, str, str]] = {
    "NL": ("Stadhouderskade", "78", "Amsterdam", "1072 AE"),
    "DE": ("Friedrichstraße", "43", "Berlin", "10117"),
    "FR": ("Rue de Rivoli", "99", "Paris", "75001"),
    "BE": ("Rue de la Loi", "16", "Brussels", "1000"),
    "ES": ("Calle de Alcalá", "45", "Madrid", "28014"),
    "IT": ("Via del Corso", "120", "Roma", "00186"),
    "AT": ("Kärntner Straße", "21", "Wien", "1010"),
    "GB": ("Baker Street", "221B", "London", "NW1 6XE"),
}


def recipient_address(country: str) -> dict[str, str]:
    """Street, house number, city and postal code of a test recipient in `country`."""
    fallback = ("Main Street", "1", "Springfield", "1000")
    street, number, city, postal_code = _ADDRESSES.get(country, fallback)
    return {"address": street, "house_number": number, "city": city, "postal_code": postal_code}
