"""Generated from proto/ by ``python -m opensphere.codegen``; never edit by hand."""
