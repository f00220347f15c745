"""``--cfg-options key=value ...`` for the tools: mmengine's ``DictAction``
with a malformed entry refused as an argument error."""
import argparse

from mmengine.config import DictAction


class CfgOptionsAction(DictAction):
    """mmengine's :class:`~mmengine.config.DictAction`: ``key=value`` config
    overrides into a dict, values read as int, float, bool, None, list or
    tuple where they parse as one, else as text.

    ``DictAction`` raises a bare ``ValueError`` (a traceback) on an entry
    without ``=``; here such an entry is an argparse error: one usage line,
    ``error: argument --cfg-options: ...`` and exit status 2.
    """

    def __call__(self, parser: argparse.ArgumentParser,
                 namespace: argparse.Namespace, values, option_string=None):
        for entry in values:
            key, sep, _ = entry.partition('=')
            if not sep or not key:
                parser.error(f'argument {option_string}: must be key=value '
                             f'(e.g. train_cfg.max_epochs=2), got {entry!r}')
        super().__call__(parser, namespace, values, option_string)
