"""SCAN Explorer: classify a folder of images without labels, look at the clusters, fix them,
export a labelled dataset. ``streamlit run app.py`` (or ``make run``)."""
import streamlit as st

from ui.host import refuse_foreign_host
from ui.state import navigated_run, sidebar

refuse_foreign_host()  # before anything else runs: see ui/host.py (DNS rebinding)
st.set_page_config(page_title="SCAN Explorer", page_icon=":material/scatter_plot:", layout="wide")

pages = {
    "Train": [st.Page("pages/data_training.py", title="Data & training", icon=":material/model_training:",
                      default=True)],
    "Explore": [st.Page("pages/embedding.py", title="Embedding", icon=":material/scatter_plot:"),
                st.Page("pages/clusters.py", title="Clusters", icon=":material/category:"),
                st.Page("pages/neighbours.py", title="Neighbours", icon=":material/hub:"),
                st.Page("pages/evaluation.py", title="Evaluation", icon=":material/analytics:")],
    "Curate": [st.Page("pages/review.py", title="Review", icon=":material/rule:"),
               st.Page("pages/curate_export.py", title="Curate & export", icon=":material/edit_note:")],
}
page = st.navigation(pages)
st.logo("assets/logo.svg", size="large")
sidebar()
with navigated_run():
    page.run()
