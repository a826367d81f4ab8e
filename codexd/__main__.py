from codexd.cli import main

main()
