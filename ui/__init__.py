"""Streamlit helpers shared by the pages (the library, ``scan_core``, never imports this)."""
