from idlock.launch import serve_main

serve_main("refiner")
