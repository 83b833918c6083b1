"""SCAN Explorer: classify a folder of images without labels, look at the clusters, fix them,
export a labelled dataset. ``streamlit run app.py`` (or ``make run``; installed: ``scan-explorer app``)."""
from pathlib import Path

import streamlit as st

from ui.host import refuse_foreign_host
from ui.navigation import navigated_run, navigation
from ui.runs import sidebar

refuse_foreign_host()  # before anything else runs: see ui/host.py (DNS rebinding)
st.set_page_config(page_title="SCAN Explorer", page_icon=":material/scatter_plot:", layout="wide")
page = navigation()
st.logo(str(Path(__file__).with_name("assets") / "logo.svg"), size="large")  # wherever the app is started from
sidebar()
with navigated_run():
    page.run()
