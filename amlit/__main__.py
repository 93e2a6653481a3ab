from amlit.cli import main

main()
