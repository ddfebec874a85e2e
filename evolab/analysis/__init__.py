"""Tables, figures and the HTML report of a run, read from the store."""
