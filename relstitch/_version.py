"""relstitch's version, in a module of its own: what reports and the CLI record, importable without the
package's public names (so nothing imports the package ``__init__`` back)."""

__version__ = "0.1.0"
