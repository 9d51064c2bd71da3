from dcrt.cli import main

main()
