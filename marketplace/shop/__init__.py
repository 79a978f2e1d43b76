"""The pages a person clicks (docs/pages.md): plain HTML, CSS and ES modules under `/shop`, calling only
the public JSON API. Mounted by the app factory when `SHOP_ENABLED` (on outside production)."""
