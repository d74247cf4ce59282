"""Tables, figures and HTML reports from run directories (imported lazily: matplotlib is heavy)."""
