from segfpn.cli import main

main()
