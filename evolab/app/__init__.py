"""What the Streamlit app needs from evolab, without Streamlit: settings, background jobs, tables."""
