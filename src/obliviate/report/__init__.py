"""Report cards: self-contained HTML (plots embedded as PNG data URIs) and Markdown."""
