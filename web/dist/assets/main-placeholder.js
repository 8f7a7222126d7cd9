document.body.textContent = "Vireo: the web app is being built";
