package io.darkpool.image;

/**
 * Loads and initializes each class named on the command line from the current classpath, so an
 * image can prove that its Beam classpath is complete. Prints one line per class and exits 1
 * when any class is missing or fails to initialize.
 */
public final class ClassCheck {
    private ClassCheck() {}

    public static void main(String[] args) {
        if (args.length == 0) {
            System.err.println("usage: check-classes CLASS...");
            System.exit(2);
        }
        int missing = 0;
        ClassLoader loader = ClassCheck.class.getClassLoader();
        for (String name : args) {
            try {
                Class<?> loaded = Class.forName(name, true, loader);
                String where = loaded.getProtectionDomain().getCodeSource() == null
                        ? "(boot)" : loaded.getProtectionDomain().getCodeSource().getLocation().getPath();
                System.out.println("ok " + name + " " + where);
            } catch (ClassNotFoundException | LinkageError e) {
                missing++;
                System.out.println("missing " + name + " " + e);
            }
        }
        System.exit(missing == 0 ? 0 : 1);
    }
}
