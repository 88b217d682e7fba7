from matloop.cli import entry

entry()
