"""Streamlit-only helpers shared by the pages (evolab never imports this package)."""
